/**
 * CSV text per RFC 4180 (CRLF line ends; a field holding a quote, comma, CR or LF is quoted and
 * its quotes doubled), hardened against formula injection: a text cell starting with `=`, `+`,
 * `-`, `@`, a tab or a CR gets a leading `'`, so a spreadsheet shows it instead of evaluating it.
 * Numbers are written as they are (a negative number is not a formula).
 */

export type Cell = string | number | null;

const needsQuotes = /[",\r\n]/;
const formulaStart = /^[=+\-@\t\r]/;

export function csvCell(value: Cell): string {
  if (value === null) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  const text = formulaStart.test(value) ? `'${value}` : value;
  return needsQuotes.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A header line and one line per row, each ended by CRLF. */
export function toCsv(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  let out = `${header.map(csvCell).join(',')}\r\n`;
  for (const row of rows) out += `${row.map(csvCell).join(',')}\r\n`;
  return out;
}
