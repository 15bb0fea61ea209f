/**
 * Errors of the query engine: `API_BAD_QUERY` (catalogued in schemas/errors.ts), naming the
 * offending field.
 */

/** A query the engine refuses: always a 400 that names the offending field. */
export class ApiQueryError extends Error {
  override readonly name = 'ApiQueryError';
  readonly code = 'API_BAD_QUERY' as const;
  readonly status = 400 as const;

  constructor(
    /** The field at fault, as a path into the body: `metrics[1]`, `filters[0][2][1]`, `date_range`. */
    readonly field: string,
    message: string,
  ) {
    super(message);
  }

  toJSON(): { error: { code: 'API_BAD_QUERY'; field: string; message: string } } {
    return { error: { code: this.code, field: this.field, message: this.message } };
  }
}

/** Renders a path (`['filters', 0, 2]`) the way errors name fields (`filters[0][2]`). */
export function fieldName(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? 'body' : out;
}
