import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, isCurrent } from './build.js';

describe('ensureBuilt', () => {
  // A project of the checkout's shape, small enough to compile quickly (tsc runs three times).
  let root = '';
  const write = (file: string, text: string): void => {
    mkdirSync(join(root, file, '..'), { recursive: true });
    writeFileSync(join(root, file), text);
  };
  // A child process: this one's module cache would keep the first build's modules.
  const builtValue = (): unknown => JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', `console.log(JSON.stringify((await import(${JSON.stringify(pathToFileURL(join(root, 'dist', 'cli', 'main.js')).href)})).value))`], { encoding: 'utf8' }));

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'farol-build-'));
    write('package.json', '{ "type": "module" }\n');
    write('tsconfig.json', JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', strict: true, types: [], allowImportingTsExtensions: true, noEmit: true } }));
    write('tsconfig.build.json', JSON.stringify({ extends: './tsconfig.json', compilerOptions: { noEmit: false, rewriteRelativeImportExtensions: true, rootDir: '.', outDir: 'dist' }, include: ['cli', 'api'] }));
    write('cli/main.ts', "import { n } from './n.ts';\nexport const value: number = n;\n");
    write('cli/n.ts', 'export const n = 1;\n');
    write('cli/main.test.ts', 'export {};\n');
    write('api/dashboard/index.html', '<!doctype html>\n');
    write('ingest/tracker/script.js', '// tracker\n');
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('builds when dist/ is missing (imports rewritten to .js, assets copied), then only when an input changed', () => {
    expect(isCurrent(root)).toBe(false);
    expect(ensureBuilt(root)).toBe(true);
    expect(builtValue()).toBe(1);
    expect(readFileSync(join(root, 'dist', 'api', 'dashboard', 'index.html'), 'utf8')).toBe('<!doctype html>\n');
    expect(ensureBuilt(root)).toBe(false);
    // Tests are not inputs: editing one leaves the build current.
    write('cli/main.test.ts', 'export const changed = true;\n');
    expect(isCurrent(root)).toBe(true);
    // A copied asset and the build configuration are inputs.
    write('api/dashboard/index.html', '<!doctype html><title>2</title>\n');
    expect(isCurrent(root)).toBe(false);
    write('api/dashboard/index.html', '<!doctype html>\n');
    expect(isCurrent(root)).toBe(true);
    write('tsconfig.json', readFileSync(join(root, 'tsconfig.json'), 'utf8') + '\n');
    expect(isCurrent(root)).toBe(false);
    // So is a source the entry imports.
    write('cli/n.ts', 'export const n = 2;\n');
    expect(ensureBuilt(root)).toBe(true);
    expect(builtValue()).toBe(2);
    expect(isCurrent(root)).toBe(true);
    // The same checkout copied elsewhere (a container's build stage, a moved install) is still current.
    const copy = mkdtempSync(join(tmpdir(), 'farol-build-copy-'));
    try {
      cpSync(root, copy, { recursive: true });
      expect(isCurrent(copy)).toBe(true);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  }, 90_000);

  it('treats a build without its fingerprint (interrupted) as stale, and keeps the last good build when tsc fails', () => {
    rmSync(join(root, 'dist', 'build.json'));
    expect(isCurrent(root)).toBe(false);
    write('cli/n.ts', "export const n: number = 'not a number';\n");
    expect(() => ensureBuilt(root)).toThrow(/tsc/);
    expect(builtValue()).toBe(2);
    // Still stale: the next start tries again rather than running what is there.
    expect(isCurrent(root)).toBe(false);
  }, 90_000);
});
