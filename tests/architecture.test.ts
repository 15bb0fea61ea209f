import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The import arrows check (`npm run depcheck`, in `npm test`): the repository's own rules
 * (.dependency-cruiser.js) run by the same script over a small tree in which every wrong-way
 * import is one line, beside the right-way imports the rules must let through. The real tree
 * passing is `npm run depcheck` itself.
 */

const script = fileURLToPath(new URL('../scripts/depcheck.mjs', import.meta.url));
let dir = '';

/** path → the modules it imports (a `.ts` file exporting one constant). */
const tree: Record<string, string[]> = {
  // Wrong way: each is reported.
  'api/report.ts': ['ingest/collector.ts', 'store/store.ts', 'control/reader.ts', 'lib/log.ts'],
  'schemas/config.ts': ['lib/log.ts'],
  'lib/log.ts': ['schemas/config.ts'],
  'hub/hub.ts': ['store/store.ts'],
  'store/store.ts': ['schemas/config.ts'],
  'control/reader.ts': ['store/store.ts', 'api/report.ts'],
  'processor/processor.ts': ['hub/hub.ts', 'store/store.ts', 'control/reader.ts'],
  'ingest/collector.ts': ['hub/hub.ts', 'control/reader.ts', 'ingest/testing/fixture.ts', 'wiring/hub.ts'],
  'ingest/testing/fixture.ts': [],
  'wiring/hub.ts': ['hub/hub.ts', 'processor/main.ts'],
  'processor/main.ts': ['wiring/hub.ts', 'processor/processor.ts'],
  'api/main.ts': ['wiring/hub.ts', 'cli/start.ts'],
  'cli/start.ts': ['api/main.ts', 'wiring/hub.ts'],
  'lib/a.ts': ['lib/b.ts'],
  'lib/b.ts': ['lib/a.ts'],
  // Tests may import anything (but testing/ helpers and cli/ only from tests).
  'ingest/collector.test.ts': ['ingest/testing/fixture.ts', 'cli/start.ts', 'api/report.ts'],
  'tests/e2e.test.ts': ['cli/start.ts', 'processor/main.ts', 'ingest/testing/fixture.ts'],
  'tests/support/traffic.ts': [],
  // …except tests/ from a test beside the code: that is an integration test, it lives in tests/.
  'hub/hub.test.ts': ['tests/support/traffic.ts', 'hub/hub.ts'],
  'bench/run.ts': ['cli/start.ts', 'wiring/hub.ts'],
};

function run(root: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script, root], { encoding: 'utf8' }, (err, stdout) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout });
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'farol-arrows-'));
  for (const [path, imports] of Object.entries(tree)) {
    await mkdir(join(dir, dirname(path)), { recursive: true });
    const lines = imports.map((to, i) => `import { x as x${i} } from '${relative(path, to)}';`);
    await writeFile(join(dir, path), `${lines.join('\n')}\nexport const x = [${imports.map((_, i) => `x${i}`).join(', ')}];\n`);
  }
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `to` as imported from `from` (both relative to the tree's root). */
function relative(from: string, to: string): string {
  const up = from.split('/').length - 1;
  return `${up === 0 ? './' : '../'.repeat(up)}${to}`;
}

describe.concurrent('import arrows (.dependency-cruiser.js)', () => {
  it('reports every wrong-way import by rule, and nothing else', async () => {
    const { code, stdout } = await run(dir);
    const reported = [...stdout.matchAll(/error ([\w-]+): (\S+) → (\S+)/g)].map((m) => `${m[1]}: ${m[2]} → ${m[3]}`).sort();
    expect(reported).toEqual(
      [
        'api-imports-only-schemas-lib-store-control: api/report.ts → ingest/collector.ts',
        'schemas-imports-only-itself: schemas/config.ts → lib/log.ts',
        'hub-imports-only-schemas-lib: hub/hub.ts → store/store.ts',
        'control-imports-only-schemas-lib-store: control/reader.ts → api/report.ts',
        'processor-imports-only-schemas-lib-hub-store: processor/processor.ts → control/reader.ts',
        'testing-only-from-tests: ingest/collector.ts → ingest/testing/fixture.ts',
        'wiring-only-from-mains: ingest/collector.ts → wiring/hub.ts',
        'wiring-not-to-mains: wiring/hub.ts → processor/main.ts',
        'nothing-imports-cli: api/main.ts → cli/start.ts',
        'unit-tests-stay-in-their-part: hub/hub.test.ts → tests/support/traffic.ts',
        'api-imports-only-schemas-lib-store-control: api/main.ts → cli/start.ts',
      ].sort(),
    );
    // Each cycle once, as the set of its modules.
    const cycles = stdout
      .split(/\berror /)
      .filter((block) => block.startsWith('no-circular:'))
      .map((block) => [...new Set(block.match(/[\w-]+\/[\w/.-]+\.ts/g))].sort().join(' ⇄ '));
    expect(cycles).toContain('lib/a.ts ⇄ lib/b.ts');
    expect(cycles).toContain('lib/log.ts ⇄ schemas/config.ts');
    expect(cycles).toContain('processor/main.ts ⇄ wiring/hub.ts');
    expect(code).toBe(1);
  });

  it('passes a tree that keeps the arrows', async () => {
    const clean = await mkdtemp(join(tmpdir(), 'farol-arrows-clean-'));
    try {
      const files: Record<string, string> = {
        'schemas/config.ts': 'export const x = 1;\n',
        'api/report.ts': "import { x } from '../schemas/config.ts';\nexport const y = x;\n",
      };
      for (const [path, text] of Object.entries(files)) {
        await mkdir(join(clean, dirname(path)), { recursive: true });
        await writeFile(join(clean, path), text);
      }
      expect(await run(clean)).toMatchObject({ code: 0 });
    } finally {
      await rm(clean, { recursive: true, force: true });
    }
  });
});
