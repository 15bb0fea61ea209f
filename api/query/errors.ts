import { FarolError } from '../../schemas/errors.ts';

/** A query the engine refuses: `API_BAD_QUERY` (400), always naming the field at fault. */
export class ApiQueryError extends FarolError {
  declare readonly code: 'API_BAD_QUERY';
  declare readonly field: string;

  constructor(
    /** The field at fault, as a path into the body: `metrics[1]`, `filters[0][2][1]`, `date_range`. */
    field: string,
    message: string,
  ) {
    super('API_BAD_QUERY', message, { field });
  }
}
