// @ts-check
/* global document, window */
// DOM helpers: text only. All text reaches the DOM through textContent or attributes, never as
// HTML: page paths, sources and goal names are chosen by whoever sends events.

/** @typedef {Node | string | number | boolean | null | undefined} Leaf */
/** @typedef {Leaf | readonly Leaf[]} Child A node, a text, nothing, or a list of them. */

/**
 * Creates an element; string and number children become text nodes, attributes are set as such.
 * @param {string} tag
 * @param {Record<string, unknown> | null | undefined} attrs
 * @param {...Child} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(/** @type {Record<string, unknown>} */ (v))) el.dataset[dk] = String(dv);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/**
 * @param {HTMLElement} el
 * @param {readonly Child[]} children
 */
function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof window.Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * Replaces every child of `el`.
 * @param {HTMLElement} el
 * @param {...Child} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * The element with this id; the page's ids are fixed, so it exists.
 * @param {string} id
 * @returns {HTMLElement}
 */
export const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * The form field with this id.
 * @param {string} id
 * @returns {HTMLInputElement | HTMLSelectElement}
 */
export const field = (id) => /** @type {HTMLInputElement | HTMLSelectElement} */ (document.getElementById(id));
