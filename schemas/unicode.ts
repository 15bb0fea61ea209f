/**
 * Every string Farol takes in is well-formed Unicode without NUL. A lone surrogate makes the
 * whole ClickHouse insert of its batch fail (CANNOT_PARSE_ESCAPE_SEQUENCE), and NUL cuts C
 * strings short in whatever reads the data later.
 *
 * JSON text that decoded as strict UTF-8 and that JSON.parse accepted can carry either only as a
 * `\u` escape: UTF-8 cannot encode a surrogate and JSON refuses raw control characters. So one
 * scan of the text decides ({@link hasBadEscape}); values are walked only to name the field of a
 * refusal ({@link findBadString}).
 */

/** Why a string is refused. */
/** (`unknown`: the escape was found in the text but its string was overwritten by a duplicate key.) */
export type BadStringReason = 'lone surrogate' | 'NUL' | 'unknown';

/** Whether `s` is well-formed Unicode without NUL. */
export function isCleanString(s: string): boolean {
  return s.isWellFormed() && !s.includes('\0');
}

/** Why `s` is refused, or undefined when it is clean. */
export function badStringReason(s: string): BadStringReason | undefined {
  if (!s.isWellFormed()) return 'lone surrogate';
  if (s.includes('\0')) return 'NUL';
  return undefined;
}

/**
 * Whether JSON text holds an escape that decodes to NUL or to a lone surrogate (`\u0000`,
 * `\ud800` not followed by a low-surrogate escape, `\udc00` alone). Only for text JSON.parse
 * accepted: there every backslash starts an escape inside a string, so walking from one escape to
 * the next never misreads an escaped backslash followed by `u` (`"\\u0000"` is clean).
 */
export function hasBadEscape(text: string): boolean {
  // Nearly all beacons hold no `\u` at all: one scan of the text, nothing more.
  if (text.indexOf('\\u') === -1) return false;
  let i = text.indexOf('\\');
  while (i !== -1) {
    if (text.charCodeAt(i + 1) !== 0x75 /* u */) {
      i = text.indexOf('\\', i + 2);
      continue;
    }
    const unit = hex4(text, i + 2);
    if (unit === 0) return true;
    if (unit >= 0xd800 && unit <= 0xdfff) {
      if (unit >= 0xdc00) return true;
      if (text.charCodeAt(i + 6) !== 0x5c || text.charCodeAt(i + 7) !== 0x75) return true;
      const low = hex4(text, i + 8);
      if (low < 0xdc00 || low > 0xdfff) return true;
      i = text.indexOf('\\', i + 12);
      continue;
    }
    i = text.indexOf('\\', i + 6);
  }
  return false;
}

/** The value of four hex digits at `at` (JSON.parse checked they are hex). */
function hex4(text: string, at: number): number {
  let v = 0;
  for (let k = at; k < at + 4; k++) {
    const c = text.charCodeAt(k);
    v = v * 16 + (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57);
  }
  return v;
}

/** Where a refused string sits in a decoded JSON value: its path, and whether it is a key. */
export interface BadString {
  /** Object keys and array indices from the root; for a bad key, the path ends with that key. */
  path: Array<string | number>;
  key: boolean;
  reason: BadStringReason;
}

/**
 * The first string (object key or value) in a decoded JSON value that is not clean, depth first,
 * or undefined. Iterative: JSON.parse builds values nested deeper than the call stack allows.
 */
export function findBadString(value: unknown): BadString | undefined {
  // Each pending value links to its parent, so a path is built only for the one refused string.
  interface Node {
    value: unknown;
    parent: Node | undefined;
    key: string | number;
  }
  const pathOf = (node: Node | undefined, last?: string): Array<string | number> => {
    const path: Array<string | number> = last === undefined ? [] : [last];
    for (let n = node; n !== undefined && n.parent !== undefined; n = n.parent) path.push(n.key);
    return path.reverse();
  };
  const stack: Node[] = [{ value, parent: undefined, key: '' }];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    const v = node.value;
    if (typeof v === 'string') {
      const reason = badStringReason(v);
      if (reason !== undefined) return { path: pathOf(node), key: false, reason };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i] as unknown, parent: node, key: i });
    } else if (typeof v === 'object' && v !== null) {
      const keys = Object.keys(v);
      for (const k of keys) {
        const reason = badStringReason(k);
        if (reason !== undefined) return { path: pathOf(node, k), key: true, reason };
      }
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i] as string;
        stack.push({ value: (v as Record<string, unknown>)[k], parent: node, key: k });
      }
    }
  }
  return undefined;
}

/**
 * The refused string of JSON `text` that parsed to `value`, or undefined when every string is
 * clean: the scan decides, the walk names the place.
 */
export function badStringInJson(text: string, value: unknown): BadString | undefined {
  if (!hasBadEscape(text)) return undefined;
  // A bad string overwritten by a later duplicate key is still refused, with no place to name.
  return findBadString(value) ?? { path: [], key: false, reason: 'unknown' };
}

/** A path segment fit for an error message: bounded, and any lone surrogate written as an escape. */
function segment(key: string | number): string {
  if (typeof key === 'number') return String(key);
  if (/^[\w$@-]{1,64}$/.test(key)) return key;
  return JSON.stringify(key.length > 32 ? `${key.slice(0, 32)}…` : key);
}

/** `[3].props.plan`, `filters[0][2]`: indices in brackets, as every field Farol names (ingest and API). */
export function formatPath(path: ReadonlyArray<string | number>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out === '' ? '' : '.'}${segment(p)}`;
  return out;
}

/** The refusal message for a bad string: `props.k: holds a lone surrogate`. */
export function badStringMessage(bad: BadString): string {
  const where = formatPath(bad.path);
  const holds = { NUL: 'NUL (\\u0000)', 'lone surrogate': 'a lone surrogate (not well-formed Unicode)', unknown: 'a lone surrogate or NUL' }[bad.reason];
  const what = `${bad.key ? 'a key' : 'a string'} that holds ${holds}`;
  return where === '' ? `${what}` : `${where}: ${what}`;
}
