/**
 * The import arrows of README "Architecture", checked by `npm run depcheck` (part of `npm test`).
 * Folders are parts; each may import only the parts named in `allowed` (and itself). Tests
 * (`*.test.ts`, `tests/`, `bench/`, `<part>/testing/`) may import anything except through a
 * cycle; `<part>/testing/` is for tests only.
 */

/** Part → the parts it may import. */
const allowed = {
  schemas: [],
  lib: ['schemas'],
  hub: ['schemas', 'lib'],
  store: ['schemas', 'lib'],
  control: ['schemas', 'lib', 'store'],
  ingest: ['schemas', 'lib', 'hub', 'control'],
  processor: ['schemas', 'lib', 'hub', 'store'],
  api: ['schemas', 'lib', 'store', 'control'],
  // The composition root: opens what the configuration names. Only the process mains import it.
  wiring: ['schemas', 'lib', 'hub', 'store', 'control', 'ingest', 'processor', 'api'],
};
const parts = [...Object.keys(allowed), 'cli', 'bench', 'tests'];
const testCode = String.raw`(^|/)[^/]+\.test\.ts$|^(tests|bench)/|(^|/)testing/`;
/**
 * The wiring point of each process (and of the collector's threads: the main thread's pool and
 * each thread's entry): the only modules besides `cli/` that may import `wiring/`.
 */
const mains = String.raw`^(ingest|processor|api)/main\.ts$|^ingest/thread-(pool|worker)\.ts$`;

export default {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle makes two modules one: neither can be read, tested or moved alone.',
      from: {},
      to: { circular: true },
    },
    ...Object.entries(allowed).map(([part, may]) => ({
      name: `${part}-imports-only-${may.length === 0 ? 'itself' : may.join('-')}`,
      severity: 'error',
      comment: `${part}/ imports ${may.length === 0 ? 'none of the other parts' : `only ${may.join(', ')}`} (README "Architecture")`,
      from: { path: `^${part}/`, pathNot: testCode },
      to: {
        path: `^(${parts.filter((p) => p !== part && !may.includes(p) && p !== 'wiring').join('|')})/`,
      },
    })),
    {
      name: 'wiring-only-from-mains',
      severity: 'error',
      comment: 'Only the process mains (and cli/) open what the configuration names, through wiring/.',
      from: { pathNot: `${mains}|^(wiring|cli)/|${testCode}` },
      to: { path: '^wiring/' },
    },
    {
      name: 'wiring-not-to-mains',
      severity: 'error',
      comment: 'wiring/ serves the mains; importing one would turn the composition root around.',
      from: { path: '^wiring/' },
      to: { path: mains },
    },
    {
      name: 'nothing-imports-cli',
      severity: 'error',
      comment: 'cli/ is the entry: it calls one main, nothing calls it (tests may).',
      from: { pathNot: `^cli/|${testCode}` },
      to: { path: '^cli/' },
    },
    {
      name: 'testing-only-from-tests',
      severity: 'error',
      comment: '<part>/testing/ holds test support: production code must not depend on it.',
      from: { pathNot: testCode },
      to: { path: '(^|/)testing/' },
    },
    {
      name: 'unit-tests-stay-in-their-part',
      severity: 'error',
      comment: 'A test beside the code imports production parts and <part>/testing/, never tests/ (integration tests live there).',
      from: { path: String.raw`^(?!tests/|bench/)[^/]+/.*\.test\.ts$` },
      to: { path: '^tests/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|data|bench/results)/' },
    // Type-only imports count: a cycle through types is still a cycle for a reader.
    tsPreCompilationDeps: true,
  },
};
