import type { z } from 'zod';

/**
 * One way to name the field a zod issue is about, for every error Farol answers (the ingest
 * events, the query body, the control plane's inputs, experiments): indices in brackets, keys
 * after dots (`filters[0][2]`, `variations[1].weight`, `props.plan`), keys as sent (bodies are
 * checked for lone surrogates and NUL before any schema sees them), a long one cut short.
 */

const MAX_KEY = 100;

/** The first MAX_KEY code units of `key`, one fewer rather than half a surrogate pair. */
function cut(key: string): string {
  const last = key.charCodeAt(MAX_KEY - 1);
  return key.slice(0, last >= 0xd800 && last <= 0xdbff ? MAX_KEY - 1 : MAX_KEY);
}

/** `path` as a field name; `root` names the whole value (an empty path). */
export function fieldName(path: readonly PropertyKey[], root = 'body'): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else {
      const key = String(part);
      out += `${out === '' ? '' : '.'}${key.length > MAX_KEY ? `${cut(key)}…` : key}`;
    }
  }
  return out === '' ? root : out;
}

export interface IssueField {
  /** The field at fault (`root` when it is the whole value). */
  field: string;
  message: string;
  /** Whether the issue has a path (false: it is about the whole value). */
  hasPath: boolean;
}

/**
 * The first issue of a failed parse, naming its field; an unknown key of a strict object is named
 * itself (`filters[0].extra`: is not a known field), not its parent.
 */
export function firstIssue(error: z.ZodError, root = 'body'): IssueField {
  const issue = error.issues[0];
  if (issue === undefined) return { field: root, message: 'is invalid', hasPath: false };
  const path: PropertyKey[] = [...issue.path];
  let message = issue.message;
  if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) {
    path.push(issue.keys[0]);
    message = 'is not a known field';
  }
  return { field: fieldName(path, root), message, hasPath: path.length > 0 };
}
