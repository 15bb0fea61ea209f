import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { fieldName, firstIssue } from './issues.ts';

describe('zod issue → field', () => {
  it.each([
    [[], 'body'],
    [['metrics', 1], 'metrics[1]'],
    [['filters', 0, 2, 1], 'filters[0][2][1]'],
    [['variations', 1, 'weight'], 'variations[1].weight'],
    [[0, 'props', "k'; --"], "[0].props.k'; --"],
  ])('%j is named %s', (path, name) => {
    expect(fieldName(path)).toBe(name);
  });

  it('cuts a long key short, never through a surrogate pair', () => {
    expect(fieldName(['a'.repeat(500)])).toBe(`${'a'.repeat(100)}…`);
    const name = fieldName([`${'a'.repeat(99)}😀tail`]);
    expect(name).toBe(`${'a'.repeat(99)}…`);
    expect(name.isWellFormed()).toBe(true);
  });

  it('names an unknown key itself, and the root when the whole value is wrong', () => {
    const schema = z.strictObject({ a: z.array(z.strictObject({ b: z.number() })) });
    const unknown = schema.safeParse({ a: [{ b: 1, c: 2 }] });
    expect(unknown.success ? undefined : firstIssue(unknown.error)).toEqual({ field: 'a[0].c', message: 'is not a known field', hasPath: true });
    const whole = schema.safeParse(3);
    expect(whole.success ? undefined : firstIssue(whole.error, 'input')).toMatchObject({ field: 'input', hasPath: false });
  });
});
