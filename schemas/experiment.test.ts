import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allPayloads, attributePayloads, cssPayloads, htmlPayloads, offSiteRedirects, redirectPayloads, targetPayloads } from './testing/xss-payloads.ts';
import { ALLOWED_ELEMENTS, decodeAttribute, htmlProblem, INERT_ATTRIBUTES, URL_ATTRIBUTES } from './experiment-safety.ts';
import { experimentCreateSchema, experimentPatchSchema, experimentSchema, parseWith, redirectProblems, storedExperimentSchema, type Experiment } from './experiment.ts';

const valid: Experiment = {
  id: 'hero-cta.v2',
  site: 'example.com',
  name: 'Hero call to action',
  status: 'running',
  goal: { type: 'pageview', path: '/signup/**' },
  control: 'A',
  variations: [
    { key: 'A', weight: 50, changes: [] },
    {
      key: 'B',
      weight: 50,
      changes: [
        { type: 'text', selector: 'h1', value: 'Start free' },
        { type: 'html', selector: '#cta', value: '<b>Go</b>' },
        { type: 'attribute', selector: 'a.cta', name: 'href', value: '/signup?b' },
        { type: 'css', value: '.cta{color:red}' },
      ],
    },
  ],
  pages: ['/', '/blog/*'],
  started_at: '2026-01-02T03:04:05.000Z',
};

const with_ = (patch: Record<string, unknown>): unknown => ({ ...valid, ...patch });
const variations = (...vs: unknown[]): unknown => with_({ variations: vs });

describe('experimentSchema', () => {
  it('accepts a full definition, and a redirect variation', () => {
    expect(parseWith(experimentSchema, valid)).toEqual({ ok: true, value: valid });
    const redirect = variations({ key: 'A', weight: 30, changes: [] }, { key: 'B', weight: 70, changes: [{ type: 'redirect', url: 'https://example.com/b' }] });
    expect(parseWith(experimentSchema, redirect).ok).toBe(true);
    expect(parseWith(experimentSchema, with_({ goal: { type: 'event', name: 'Signup' }, pages: undefined })).ok).toBe(true);
  });

  it.each([
    ['an id with a space', with_({ id: 'a b' }), 'id'],
    ['an id of 101 characters', with_({ id: 'x'.repeat(101) }), 'id'],
    ['an unknown status', with_({ status: 'paused' }), 'status'],
    ['an empty name', with_({ name: '' }), 'name'],
    ['a name of 201 characters', with_({ name: 'n'.repeat(201) }), 'name'],
    ['a goal of an unknown type', with_({ goal: { type: 'click', selector: 'a' } }), 'goal.type'],
    ['a pageview goal without a leading slash', with_({ goal: { type: 'pageview', path: 'blog/**' } }), 'goal.path'],
    ['a pageview goal with a space', with_({ goal: { type: 'pageview', path: '/a b' } }), 'goal.path'],
    ['an event goal of 121 characters', with_({ goal: { type: 'event', name: 'e'.repeat(121) } }), 'goal.name'],
    ['a control that is no variation', with_({ control: 'Z' }), 'control'],
    ['one variation', variations({ key: 'A', weight: 100, changes: [] }), 'variations'],
    ['21 variations', with_({ variations: Array.from({ length: 21 }, (_, i) => ({ key: `v${i}`, weight: i === 0 ? 80 : 1, changes: [] })) }), 'variations'],
    ['weights adding up to 90', variations({ key: 'A', weight: 40, changes: [] }, { key: 'B', weight: 50, changes: [] }), 'variations'],
    ['a weight above 100', variations({ key: 'A', weight: 101, changes: [] }, { key: 'B', weight: -1, changes: [] }), 'variations[0].weight'],
    ['a control without traffic', variations({ key: 'A', weight: 0, changes: [] }, { key: 'B', weight: 100, changes: [] }), 'variations[0].weight'],
    ['no treatment with traffic', variations({ key: 'A', weight: 100, changes: [] }, { key: 'B', weight: 0, changes: [] }), 'variations'],
    ['a duplicate key', variations({ key: 'A', weight: 50, changes: [] }, { key: 'A', weight: 50, changes: [] }), 'variations[1].key'],
    ['a key with a colon', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B:1', weight: 50, changes: [] }), 'variations[1].key'],
    ['an unknown change type', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'script', value: 'x' }] }), 'variations[1].changes[0].type'],
    ['a text change without selector', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'text', selector: '', value: 'x' }] }), 'variations[1].changes[0].selector'],
    ['an onclick attribute', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'attribute', selector: 'a', name: 'OnClick', value: 'x()' }] }), 'variations[1].changes[0].name'],
    ['a javascript: redirect', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'redirect', url: 'javascript:alert(1)' }] }), 'variations[1].changes[0].url'],
    ['a protocol-relative redirect', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'redirect', url: '//evil.test/' }] }), 'variations[1].changes[0].url'],
    ['an extra field on a change', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'css', value: 'a{}', selector: 'a' }] }), 'variations[1].changes[0].selector'],
    ['51 changes', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: Array.from({ length: 51 }, () => ({ type: 'css', value: 'a{}' })) }), 'variations[1].changes'],
    ['html of 50,001 characters', variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'html', selector: 'p', value: 'x'.repeat(50_001) }] }), 'variations[1].changes[0].value'],
    ['an empty pages list', with_({ pages: [] }), 'pages'],
    ['51 pages', with_({ pages: Array.from({ length: 51 }, (_, i) => `/p${i}`) }), 'pages'],
    ['a page that is no path', with_({ pages: ['https://example.com/'] }), 'pages[0]'],
    ['a start that is not a date-time', with_({ started_at: 'yesterday' }), 'started_at'],
    ['a stop before the start', with_({ stopped_at: '2026-01-01T00:00:00Z' }), 'stopped_at'],
    ['an unknown field', with_({ owner: 'me' }), 'owner'],
  ])('rejects %s, naming %s', (_name, input, field) => {
    const r = parseWith(experimentSchema, input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.field).toBe(field);
  });

  it('accepts any split of 100 over the variations, and refuses every other sum', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 2, maxLength: 20 }), fc.boolean(), (raw, exact) => {
        const weights = raw.map((w) => w);
        const sum = weights.reduce((s, w) => s + w, 0);
        // Make the sum exactly 100 by scaling the first weight, or leave it off by the remainder.
        const first = 100 - (sum - (weights[0] ?? 0));
        if (exact) {
          if (first <= 0 || first > 100) return;
          weights[0] = first;
        } else if (sum === 100) return;
        const input = with_({ control: 'v0', variations: weights.map((w, i) => ({ key: `v${i}`, weight: w, changes: [] })) });
        expect(parseWith(experimentSchema, input).ok).toBe(exact);
      }),
    );
  });
});

describe('create and patch bodies', () => {
  const { id: _id, site: _site, status: _status, started_at: _s, ...editable } = valid;

  it('a create body needs no id, site or status, and may not set the run times or the site', () => {
    expect(parseWith(experimentCreateSchema, editable).ok).toBe(true);
    expect(parseWith(experimentCreateSchema, { ...editable, id: 'x', status: 'draft' }).ok).toBe(true);
    for (const field of ['site', 'started_at', 'stopped_at']) {
      const r = parseWith(experimentCreateSchema, { ...editable, [field]: 'x' });
      expect(r).toEqual({ ok: false, field, message: 'is not a known field' });
    }
  });

  it('a patch may name any editable field, null pages, and nothing else', () => {
    expect(parseWith(experimentPatchSchema, {}).ok).toBe(true);
    expect(parseWith(experimentPatchSchema, { status: 'stopped', pages: null }).ok).toBe(true);
    expect(parseWith(experimentPatchSchema, { id: 'other' })).toMatchObject({ ok: false, field: 'id' });
    expect(parseWith(experimentPatchSchema, { variations: [{ key: 'A', weight: 'x' }] })).toMatchObject({ ok: false, field: 'variations[0].weight' });
  });
});

describe('changes that could run script on the page (attacker payloads)', () => {
  const withChange = (change: unknown): unknown => variations({ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'text', selector: 'h1', value: 'ok' }, change] });

  describe.each([
    ['html', htmlPayloads],
    ['attribute', attributePayloads],
    ['target', targetPayloads],
    ['css', cssPayloads],
    ['redirect', redirectPayloads],
  ] as const)('%s', (_kind, payloads) => {
    it.each(payloads)('refuses %s, naming the field', (_label, change, field) => {
      const r = parseWith(experimentSchema, withChange(change));
      expect(r).toMatchObject({ ok: false, field: `variations[1].changes[1].${field}` });
    });
  });

  it('reads such a definition back from storage (to list, fix or delete it), and nothing else', () => {
    for (const [, change] of allPayloads) {
      const stored = withChange(change);
      expect(parseWith(experimentSchema, stored).ok).toBe(false);
      // Only the shape holds: an older version may have stored it.
      if (parseWith(storedExperimentSchema, stored).ok) expect(storedExperimentSchema.parse(stored)).toEqual(stored);
    }
    expect(parseWith(storedExperimentSchema, withChange({ type: 'attribute', selector: 'img', name: 'onerror', value: 'x()' })).ok).toBe(true);
  });

  it.each([
    ['markup with allowed elements, attributes and references', { type: 'html', selector: '#cta', value: '<h2 class="t">Start <em>free</em> &amp; save</h2>\n<p>Plans from 5&euro;<br/>a month &lt;3</p>' }],
    ['a link with a relative, query-string href', { type: 'html', selector: '#cta', value: '<a href="/signup?plan=pro&seats=2&amp;x=1" target="_blank" rel="noopener" title="Go">Go</a>' }],
    ['an image from a CDN', { type: 'html', selector: '#hero', value: "<img src='https://cdn.example.com/hero.png' alt=Hero aria-label=\"hero\">" }],
    ['a table', { type: 'html', selector: 'section.pricing', value: '<table><thead><tr><th>Plan</th></tr></thead><tbody><tr><td>Pro</td></tr></tbody></table>' }],
    ['a title holding markup (it is text: the browser never parses it)', { type: 'html', selector: 'p', value: '<p title="</p><img src=x onerror=alert(1)>">x</p>' }],
    ['an https href', { type: 'attribute', selector: 'a.cta', name: 'href', value: 'https://example.com/b?x=1#y' }],
    ['a class', { type: 'attribute', selector: 'body', name: 'class', value: 'variant-b' }],
    ['an aria label', { type: 'attribute', selector: 'button', name: 'aria-label', value: 'Buy now' }],
    ['a selector with a class that says script', { type: 'text', selector: '.script-title, [data-kind="script"]', value: 'ok' }],
    ['css with media queries, comments and strings', { type: 'css', value: '/* b */ @media (max-width: 600px) { .cta { color: rgb(255, 0, 0); content: "go" } }' }],
    ['text that looks like markup (it stays text)', { type: 'text', selector: 'h1', value: '<script>alert(1)</script>' }],
    ['a redirect to a path', { type: 'redirect', url: '/pricing-b' }],
  ])('accepts %s', (_label, change) => {
    expect(parseWith(experimentSchema, withChange(change))).toMatchObject({ ok: true });
  });

  it('checks html in linear time, whatever the input', () => {
    for (const evil of ['<a' + ' '.repeat(50_000), '<a' + ' title'.repeat(8_000), '<a title="' + '<'.repeat(40_000), '<'.repeat(50_000), '<a title=x'.repeat(5_000)]) {
      expect(htmlProblem(evil)).toBeDefined();
    }
    expect(htmlProblem('<b>x</b>'.repeat(6_000))).toBeUndefined();
  });

  it('refuses every element and attribute outside the allowlists, in any case', () => {
    const elements = new Set<string>(ALLOWED_ELEMENTS);
    const attributes = new Set<string>([...INERT_ATTRIBUTES, ...URL_ATTRIBUTES]);
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9]{0,9}$/), fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9-]{0,12}$/), (element, attribute) => {
        const tag = htmlProblem(`<${element}>x</${element}>`);
        expect(tag === undefined).toBe(elements.has(element.toLowerCase()));
        const withAttribute = htmlProblem(`<p ${attribute}="/x">x</p>`);
        expect(withAttribute === undefined).toBe(attributes.has(attribute.toLowerCase()) || /^aria-[a-z]+$/i.test(attribute));
      }),
    );
  });

  it('decodes attribute values as the HTML parser does before checking URLs', () => {
    expect(decodeAttribute('&#106;&#x61;&#0000118a&#115cript&colon;')).toBeUndefined();
    expect(decodeAttribute('&#106;&#x61;&#0000118a&#115cript:')).toBe('javascript:');
    expect(decodeAttribute('/a?b=1&amp;c=2&d=3&copy=4')).toBe('/a?b=1&c=2&d=3&copy=4');
    expect(decodeAttribute('&#0;&#xD800;&#x110000;')).toBe('\uFFFD\uFFFD\uFFFD');
  });
});

describe('redirectProblems: redirects stay on the site unless an owner allows a host', () => {
  const redirecting = (url: string): Experiment => ({ ...valid, variations: [{ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'redirect', url }] }] });

  it.each(offSiteRedirects)('refuses %s for example.com, naming the field', (url) => {
    expect(redirectProblems(redirecting(url), [])).toMatchObject({ field: 'variations[1].changes[0].url' });
  });

  it.each(['/b', 'https://example.com/b', 'http://www.example.com:8080/b', 'https://shop.example.com/'])('accepts %s on the site and its subdomains', (url) => {
    expect(redirectProblems(redirecting(url), [])).toBeUndefined();
  });

  it('accepts a host an owner allowed, and its subdomains, and nothing else', () => {
    expect(redirectProblems(redirecting('https://partner.test/x'), ['partner.test'])).toBeUndefined();
    expect(redirectProblems(redirecting('https://eu.partner.test/x'), ['partner.test'])).toBeUndefined();
    expect(redirectProblems(redirecting('https://evilpartner.test/x'), ['partner.test'])).toBeDefined();
    expect(redirectProblems(redirecting('https://partner.test.evil.test/x'), ['partner.test'])).toBeDefined();
  });
});
