import type { z } from 'zod';
import { formatPath } from './unicode.ts';

/**
 * One way to name the field a zod issue is about, for every error Farol answers (the ingest
 * events, the query body, the control plane's inputs, experiments): indices in brackets, keys
 * after dots (`filters[0][2]`, `variations[1].weight`, `props.plan`), a key that is not a plain
 * word bounded and quoted.
 */

/** `path` as a field name; `root` names the whole value (an empty path). */
export function fieldName(path: readonly PropertyKey[], root = 'body'): string {
  const out = formatPath(path.map((p) => (typeof p === 'symbol' ? String(p) : p)));
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
