/**
 * What an experiment's DOM changes may do on a customer's page: nothing that runs
 * script. The definitions travel, public, to every visitor's browser (`GET /api/config/:domain`)
 * and an admin of one site writes them, so the server refuses anything outside these rules (a 400
 * naming the field), and the tracker (ingest/tracker/script.js) enforces the same allowlists again
 * when it applies a change: a config from an older server or a tampered cache still cannot run
 * script. The lists here and the tracker's are compared by ingest/tracker/tracker.test.ts.
 *
 * - Elements: an html change holds only {@link ALLOWED_ELEMENTS}, and every change applies only to
 *   those elements (never `<script>`, `<style>`, `<base>`, `<iframe>`, `<link>`, `<meta>`, …:
 *   their text or URL attributes load or run code).
 * - Attributes: only {@link INERT_ATTRIBUTES} and the URL attributes `href` and `src`, whose value
 *   must be an http(s) URL or a relative one (never `javascript:`, `data:`, `vbscript:`, however
 *   spelled: the check is on the URL as the WHATWG parser reads it, after the entity decoding the
 *   HTML parser does). No `on…`, `style`, `srcset`, `srcdoc`, `formaction`, `action`, `xlink:href`.
 * - CSS: no `url()`, `image()`, `image-set()`, `src()`, `@import`, `expression()`, bindings, escapes
 *   or `<`: nothing that loads a resource (which could carry page content away through attribute
 *   selectors) or hides a keyword from these checks.
 * - Redirects: http(s) only, to the site's own hostname or its subdomains, or to hosts an owner
 *   allowed for the site ({@link redirectProblem}).
 */

/** Elements an html change may hold, and the only elements a change applies to. */
export const ALLOWED_ELEMENTS = [
  'a', 'b', 'body', 'br', 'button', 'div', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'label', 'li', 'ol', 'p',
  'section', 'small', 'span', 'strong', 'table', 'tbody', 'thead', 'td', 'th', 'tr', 'u', 'ul',
] as const;

/** Attributes whose value is inert text. `aria-*` are allowed too. */
export const INERT_ATTRIBUTES = ['alt', 'class', 'rel', 'target', 'title'] as const;

/** Attributes holding a URL: http(s) or relative only. */
export const URL_ATTRIBUTES = ['href', 'src'] as const;

const elements = new Set<string>(ALLOWED_ELEMENTS);
const inert = new Set<string>(INERT_ATTRIBUTES);
const urlAttributes = new Set<string>(URL_ATTRIBUTES);

/** Elements a selector must not name: their content or URLs run or load code, or they hold the page's head. */
export const FORBIDDEN_TARGETS = [
  'base', 'embed', 'frame', 'frameset', 'head', 'iframe', 'link', 'math', 'meta', 'noscript', 'object', 'portal', 'script',
  'style', 'svg', 'template', 'title',
] as const;

// C0 controls and DEL: never in a URL, selector, attribute or CSS (tab, LF and CR are allowed in
// text, html and CSS, where they are formatting).
// eslint-disable-next-line no-control-regex -- finding control characters is the point
export const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;
// eslint-disable-next-line no-control-regex -- likewise
const ANY_CONTROL = /[\u0000-\u001F\u007F]/;

/** Why `name` may not be set by a change, or undefined when it may. Names are lower case. */
export function attributeNameProblem(name: string): string | undefined {
  const allowed = (n: string): boolean => inert.has(n) || urlAttributes.has(n) || /^aria-[a-z]+$/.test(n);
  if (allowed(name)) return undefined;
  if (allowed(name.toLowerCase())) return 'must be lower case';
  if (name.toLowerCase() === 'style') return 'style attributes are not allowed: use a css change with a class';
  return `is not an allowed attribute (${[...INERT_ATTRIBUTES, ...URL_ATTRIBUTES, 'aria-*'].join(', ')})`;
}

/** Why `value` is not a safe http(s) or relative URL, or undefined. */
export function urlProblem(value: string): string | undefined {
  if (ANY_CONTROL.test(value)) return 'must not hold control characters, tabs or line breaks';
  let url: URL;
  try {
    url = new URL(value, 'https://farol.invalid/');
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `must be an http(s) or relative URL, not ${url.protocol}`;
  return undefined;
}

const BASIC_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/**
 * An attribute value as the HTML parser hands it to the DOM: numeric character references (with
 * or without `;`, as browsers read them) and the five basic named ones decoded. Any other named
 * reference with a `;` (`&colon;`, `&Tab;`, `&NewLine;` …) is refused rather than decoded: the
 * result is undefined. Legacy references without `;` decode only to Latin-1 or `&<>"`, which can
 * never spell a URL scheme, so they may stay as written.
 */
export function decodeAttribute(value: string): string | undefined {
  let refused = false;
  const out = value.replace(/&(?:#[xX]([0-9a-fA-F]+);?|#([0-9]+);?|([A-Za-z][A-Za-z0-9]*);)/g, (m, hex: string | undefined, dec: string | undefined, name: string | undefined) => {
    if (name !== undefined) {
      const basic = BASIC_ENTITIES[name];
      if (basic === undefined) refused = true;
      return basic ?? m;
    }
    const code = hex !== undefined ? parseInt(hex, 16) : Number(dec);
    // What the HTML parser does with out-of-range and surrogate code points.
    if (!Number.isFinite(code) || code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return '\uFFFD';
    return String.fromCodePoint(code);
  });
  return refused ? undefined : out;
}

/** Why attribute `name` may not hold `value` (as written in HTML or given to setAttribute), or undefined. */
export function attributeProblem(name: string, value: string): string | undefined {
  const badName = attributeNameProblem(name);
  if (badName !== undefined) return badName;
  if (CONTROL.test(value)) return 'must not hold control characters';
  if (!urlAttributes.has(name)) return undefined;
  // Checked as written and as the HTML parser would decode it: the stricter of the two applies.
  const decoded = decodeAttribute(value);
  if (decoded === undefined) return 'may use only the &amp; &lt; &gt; &quot; &apos; and numeric character references';
  return urlProblem(value) ?? urlProblem(decoded);
}

// Functions that load a resource (url(), image(), image-set(), src()), legacy script hooks, and
// what hides a keyword from this check (escapes) or leaves a <style> element (<).
const CSS_FORBIDDEN = /[<\\]|@import|(?:url|src|image|image-set|expression)\s*\(|javascript:|-moz-binding|behavior\s*:/i;

/** Why a stylesheet (a css change) is unsafe, or undefined. */
export function cssProblem(value: string): string | undefined {
  if (CONTROL.test(value)) return 'must not hold control characters';
  // Comments are removed too, so `u/**/rl(` or `@im/**/port` cannot hide a keyword.
  for (const text of [value, value.replace(/\/\*[\s\S]*?(?:\*\/|$)/g, '')]) {
    const m = CSS_FORBIDDEN.exec(text);
    if (m !== null) return `must not use ${JSON.stringify(m[0])} (no url(), image-set(), @import, expression(), escapes or <)`;
  }
  return undefined;
}

const FORBIDDEN_TYPE_SELECTOR = new RegExp(`(?:^|[\\s>+~,(|])(${FORBIDDEN_TARGETS.join('|')})(?![\\w-])`, 'i');

/** Why a selector is refused (it names an element changes never apply to), or undefined. */
export function selectorProblem(selector: string): string | undefined {
  if (CONTROL.test(selector)) return 'must not hold control characters';
  // Type selectors: a name at the start, after a combinator, a comma, a namespace bar or "(".
  // Strings and attribute selectors are left out so `[title="script"]` stays allowed.
  const bare = selector.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""').replace(/\[[^\]]*\]/g, '[]');
  const m = FORBIDDEN_TYPE_SELECTOR.exec(bare);
  if (m !== null) return `must not select <${(m[1] ?? '').toLowerCase()}> elements: changes apply only to ${ALLOWED_ELEMENTS.join(', ')}`;
  if (selector.includes('\\')) return 'must not use escapes';
  return undefined;
}

// An attribute as the HTML tokenizer reads it, restricted to what an allowed attribute needs:
// whitespace before it, a name, and an optional double-, single- or un-quoted value.
const WS = '[\\t\\n\\f\\r ]';
const ATTRIBUTE = `${WS}+([A-Za-z][A-Za-z0-9-]*)(?:${WS}*=${WS}*(?:"([^"]*)"|'([^']*)'|([^\\t\\n\\f\\r "'=<>\`]+)))?`;
const TAG = new RegExp(`<(/?)([A-Za-z][A-Za-z0-9]*)((?:${ATTRIBUTE})*)${WS}*(/?)>`, 'y');
const ONE_ATTRIBUTE = new RegExp(ATTRIBUTE, 'g');

/**
 * Why an html change is refused, or undefined. Accepted: text, and tags of allowed elements with
 * allowed attributes, written in the plain syntax browsers and this check read alike. Anything
 * else is refused rather than repaired: comments, doctypes, CDATA, processing instructions, a `<`
 * that starts no allowed tag (write `&lt;`), attributes not separated by whitespace, or `/`
 * anywhere in a tag but just before its `>`.
 */
export function htmlProblem(html: string): string | undefined {
  if (CONTROL.test(html)) return 'must not hold control characters';
  let at = html.indexOf('<');
  while (at >= 0) {
    TAG.lastIndex = at;
    const m = TAG.exec(html);
    if (m === null) return `has markup that is not a plain allowed tag at character ${at} (write &lt; for a literal <)`;
    const [, closing, rawName, attributes] = m;
    const name = (rawName ?? '').toLowerCase();
    if (!elements.has(name)) return `must not hold <${name}>: allowed elements are ${ALLOWED_ELEMENTS.join(', ')}`;
    if (closing === '/' && (attributes ?? '') !== '') return `has attributes on the closing tag </${name}>`;
    const seen = new Set<string>();
    for (const a of (attributes ?? '').matchAll(ONE_ATTRIBUTE)) {
      const attr = (a[1] ?? '').toLowerCase();
      if (seen.has(attr)) return `repeats the ${attr} attribute of <${name}>`;
      seen.add(attr);
      const problem = attributeProblem(attr, a[2] ?? a[3] ?? a[4] ?? '');
      if (problem !== undefined) return `<${name} ${attr}> ${problem}`;
    }
    at = html.indexOf('<', TAG.lastIndex);
  }
  return undefined;
}

/** Whether `host` is `domain` or one of its subdomains. */
function within(host: string, domain: string): boolean {
  return host === domain || host.endsWith(`.${domain}`);
}

/**
 * Why a redirect target is refused for a site, or undefined: it must be an http(s) URL (or a path)
 * whose host is the site's domain, one of its subdomains, or one of `allowedHosts` (set by an
 * owner) or their subdomains. Credentials in the URL are refused too.
 */
export function redirectProblem(url: string, site: string, allowedHosts: readonly string[]): string | undefined {
  const bad = urlProblem(url);
  if (bad !== undefined) return bad;
  // Resolved as the tracker resolves it, against a page of the site: "/\\evil.test" and
  // "https://site@evil.test" both land on evil.test.
  const target = new URL(url, `https://${site}/`);
  if (target.username !== '' || target.password !== '') return 'must not hold a user name or password';
  const host = target.hostname.toLowerCase();
  if (within(host, site) || allowedHosts.some((h) => within(host, h))) return undefined;
  return `must stay on ${site} or its subdomains (an owner may allow other hosts for the site)`;
}
