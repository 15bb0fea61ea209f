import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_HOSTNAME, MAX_PATHNAME, MAX_QUERY_VALUE, MAX_REFERRER, pageUrlOf, parsePageUrl, parseReferrer, referrerOf, type PageUrl } from './url.ts';

const noUtm = { source: '', medium: '', campaign: '', content: '', term: '' };

function page(hostname: string, pathname: string, extra: Partial<PageUrl> = {}): PageUrl {
  return { hostname, pathname, utm: noUtm, clickIds: [], ref: '', ...extra };
}

describe('parsePageUrl', () => {
  it.each<[string, PageUrl | null]>([
    ['https://example.com', page('example.com', '/')],
    ['https://www.Example.COM/Blog/', page('example.com', '/Blog/')],
    ['http://www.example.com:8080/a/b', page('example.com', '/a/b')],
    ['https://shop.example.com/p?x=1#section', page('shop.example.com', '/p')],
    ['https://example.com/caf%C3%A9/%E2%82%AC', page('example.com', '/café/€')],
    ['https://example.com/bad%zz/%E2%82%AC/%E2%82', page('example.com', '/bad%zz/€/%E2%82')],
    ['https://example.com/a%2Fb', page('example.com', '/a/b')],
    ['https://münchen.de/ä', page('xn--mnchen-3ya.de', '/ä')],
    [
      'https://example.com/?utm_source=%20Newsletter%20&utm_medium=email&utm_campaign=spring&utm_content=hero&utm_term=shoes',
      page('example.com', '/', {
        utm: { source: 'Newsletter', medium: 'email', campaign: 'spring', content: 'hero', term: 'shoes' },
        ref: 'Newsletter',
      }),
    ],
    ['https://example.com/?utm_source=a&utm_source=b', page('example.com', '/', { utm: { ...noUtm, source: 'a' }, ref: 'a' })],
    ['https://example.com/?ref=producthunt', page('example.com', '/', { ref: 'producthunt' })],
    ['https://example.com/?source=hn&ref=x', page('example.com', '/', { ref: 'hn' })],
    ['https://example.com/?ref=x&utm_source=tw', page('example.com', '/', { utm: { ...noUtm, source: 'tw' }, ref: 'tw' })],
    ['https://example.com/?fbclid=IwAR0abc&gclid=Cj0K', page('example.com', '/', { clickIds: ['gclid', 'fbclid'] })],
    ['https://example.com/?msclkid=1&gclid=&ttclid=2&li_fat_id=3', page('example.com', '/', { clickIds: ['msclkid', 'ttclid', 'li_fat_id'] })],
    ['https://example.com/?wbraid=1&gbraid=2&dclid=3&epik=4&rdt_cid=5&twclid=6&irclickid=7', page('example.com', '/', {
      clickIds: ['gbraid', 'wbraid', 'dclid', 'twclid', 'epik', 'rdt_cid', 'irclickid'],
    })],
    ['https://example.com/#/app/settings', page('example.com', '/')],
    ['/relative/path', null],
    ['example.com/no-scheme', null],
    ['ftp://example.com/file', null],
    ['javascript:alert(1)', null],
    ['', null],
    ['https://', null],
  ])('%s', (url, expected) => {
    expect(parsePageUrl(url)).toEqual(expected);
  });

  it('keeps the fragment in hash mode', () => {
    expect(parsePageUrl('https://example.com/app#/settings/%C3%A9', { hashMode: true })?.pathname).toBe('/app#/settings/é');
    expect(parsePageUrl('https://example.com/app#', { hashMode: true })?.pathname).toBe('/app');
  });

  it('bounds the pathname and query values', () => {
    const long = parsePageUrl(`https://example.com/${'a'.repeat(5000)}?utm_source=${'b'.repeat(5000)}`);
    expect(long?.pathname.length).toBe(MAX_PATHNAME);
    expect(long?.utm.source.length).toBe(MAX_QUERY_VALUE);
  });

  it('does not split a surrogate pair when cutting', () => {
    const p = parsePageUrl(`https://example.com/${'a'.repeat(MAX_PATHNAME - 2)}${encodeURIComponent('😀')}`);
    expect(p?.pathname.length).toBe(MAX_PATHNAME - 1);
    expect(p?.pathname.endsWith('a')).toBe(true);
  });
});

describe('parseReferrer', () => {
  it.each<[string, { host: string; clean: string } | null]>([
    ['https://www.google.com/', { host: 'google.com', clean: 'https://www.google.com/' }],
    ['https://www.google.co.uk/search?q=secret', { host: 'google.co.uk', clean: 'https://www.google.co.uk/search' }],
    ['https://user:pw@news.ycombinator.com/item?id=1#c', { host: 'news.ycombinator.com', clean: 'https://news.ycombinator.com/item' }],
    ['http://Blog.Example.org:8080/post', { host: 'blog.example.org', clean: 'http://blog.example.org:8080/post' }],
    ['android-app://com.google.android.gm/', { host: 'com.google.android.gm', clean: 'android-app://com.google.android.gm/' }],
    ['  https://t.co/abc  ', { host: 't.co', clean: 'https://t.co/abc' }],
    ['', null],
    ['not a url', null],
    ['file:///etc/passwd', null],
    ['chrome://newtab/', null],
    ['about:blank', null],
  ])('%j', (referrer, expected) => {
    expect(parseReferrer(referrer)).toEqual(expected);
  });
});

const urlish = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.webUrl({ withQueryParameters: true, withFragments: true, validSchemes: ['http', 'https'] }),
  fc
    .tuple(fc.constantFrom('https://', 'http://www.', 'android-app://', 'https://x.com/'), fc.string({ unit: 'binary', maxLength: 3000 }))
    .map(([a, b]) => a + b),
  fc
    .tuple(fc.webUrl(), fc.array(fc.tuple(fc.constantFrom('utm_source', 'utm_medium', 'gclid', 'ref', 'source', 'x'), fc.string({ unit: 'binary' }))))
    .map(([base, qs]) => `${base}?${qs.map(([k, v]) => `${k}=${encodeURIComponent(v.replace(/[\uD800-\uDFFF]/g, ''))}`).join('&')}`),
);

describe('URL parsing properties', () => {
  it('parsePageUrl never throws and bounds every output field', () => {
    fc.assert(
      fc.property(urlish, fc.boolean(), (url, hashMode) => {
        const p = parsePageUrl(url, { hashMode });
        if (p === null) return;
        expect(p.hostname.length).toBeLessThanOrEqual(MAX_HOSTNAME);
        expect(p.hostname.startsWith('www.')).toBe(false);
        expect(p.pathname.length).toBeLessThanOrEqual(MAX_PATHNAME);
        expect(p.pathname.startsWith('/')).toBe(true);
        for (const v of [...Object.values(p.utm), p.ref]) expect(v.length).toBeLessThanOrEqual(MAX_QUERY_VALUE);
        expect(new Set(p.clickIds).size).toBe(p.clickIds.length);
      }),
      { numRuns: 2000 },
    );
  });

  it('parseReferrer never throws and bounds its output', () => {
    fc.assert(
      fc.property(urlish, (ref) => {
        const r = parseReferrer(ref);
        if (r === null) return;
        expect(r.host.length).toBeGreaterThan(0);
        expect(r.host.length).toBeLessThanOrEqual(MAX_HOSTNAME);
        expect(r.clean.length).toBeLessThanOrEqual(MAX_REFERRER);
        expect(r.clean).not.toMatch(/[?#]/);
      }),
      { numRuns: 2000 },
    );
  });

  it('answer from the cache exactly as without it, in either hash mode, and cache nothing with a query, fragment or credentials', () => {
    const repeated = fc.oneof(
      urlish,
      fc.constantFrom('https://example.com/', 'https://www.example.com/pricing', 'http://example.com/a%20b', 'https://google.com', 'https://x.com/%E0%A4%A', 'nonsense'),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(repeated, fc.boolean()), { maxLength: 20 }), (list) => {
        for (const [url, hashMode] of [...list, ...list]) {
          expect(parsePageUrl(url, { hashMode })).toEqual(pageUrlOf(url, { hashMode }));
          expect(parseReferrer(url)).toEqual(referrerOf(url));
        }
      }),
      { numRuns: 300 },
    );
    // A cached answer is shared and frozen; one that may hold a click id or a password is not kept.
    const cached = parsePageUrl('https://example.com/frozen');
    expect(parsePageUrl('https://example.com/frozen')).toBe(cached);
    expect(Object.isFrozen(cached) && Object.isFrozen(cached?.utm) && Object.isFrozen(cached?.clickIds)).toBe(true);
    expect(Object.isFrozen(parseReferrer('https://news.ycombinator.com/'))).toBe(true);
    for (const url of ['https://example.com/?gclid=abc', 'https://example.com/#/a', 'https://user:pw@example.com/']) {
      expect(Object.isFrozen(parsePageUrl(url, { hashMode: true }))).toBe(false);
      expect(parsePageUrl(url)).not.toBe(parsePageUrl(url));
      expect(Object.isFrozen(parseReferrer(url))).toBe(false);
    }
  });
});
