import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCurrent, ROOT } from '../scripts/build.js';

/**
 * Production runs compiled JavaScript: the `farol` bin (cli/farol.js, also `npm start`) builds
 * dist/ when it is missing or was built from other sources, then runs dist/cli/run.js. The other
 * tests start dist/cli/run.js directly (tests/support/farol-process.ts); this one runs the bin as
 * production does (scripts/build.test.ts tests the build itself).
 */

describe('the compiled farol bin', () => {
  let child: ChildProcess | undefined;
  let dataDir = '';
  let url = '';
  const output: string[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'farol-bin-'));
    child = spawn(process.execPath, [join(ROOT, 'cli', 'farol.js'), 'start'], {
      env: { PATH: process.env.PATH ?? '', FAROL_PORT: '0', FAROL_METRICS_PORT: '', FAROL_DATA_DIR: dataDir, FAROL_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: child.stderr! }).on('line', (l) => output.push(l));
    // The first start of a run compiles dist/ (tsc, some seconds on a busy machine) unless it is current.
    url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child!.stdout! }).on('line', (line) => {
        output.push(line);
        if (!line.includes('collector listening')) return;
        resolve(`http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`);
      });
      child!.on('exit', (code, signal) => reject(new Error(`farol start exited (${code ?? signal}) before listening:\n${output.join('\n')}`)));
    });
  }, 170_000);

  afterAll(() => {
    child?.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts from dist/, built from exactly the current sources, and answers /healthz', async () => {
    expect(isCurrent()).toBe(true);
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
  });

  it('serves the files it reads at run time beside its modules (copied into dist/)', async () => {
    const tracker = await fetch(`${url}/js/script.js`);
    expect(tracker.status).toBe(200);
    expect(await tracker.text()).toBe(readFileSync(join(ROOT, 'ingest', 'tracker', 'script.js'), 'utf8'));
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toBe(readFileSync(join(ROOT, 'api', 'dashboard', 'index.html'), 'utf8'));
    // The dashboard's chart library comes from node_modules, as in development.
    expect((await fetch(`${url}/dashboard/uplot.esm.js`)).status).toBe(200);
  });
});
