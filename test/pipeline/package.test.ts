import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/build.ts';

const run = promisify(execFile);

/**
 * The package as npm publishes it: `npm pack` (dist/ is built by the test setup, so the
 * prepare script is skipped here), installed into an empty folder, runs `drover demo`.
 * Dependencies come from the npm cache where it has them (npm ci filled it) and the
 * registry otherwise. The native SQLite binding is copied from this checkout's install
 * rather than built again, which takes minutes.
 */
describe('the npm package', () => {
  const dir = mkdtempSync(join(tmpdir(), 'drover-pack-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('packs without tests, installs into an empty folder and runs drover demo there', async () => {
    const packed = await run(
      'npm',
      ['pack', '--json', '--ignore-scripts', '--pack-destination', dir],
      { cwd: ROOT, maxBuffer: 16 << 20 },
    );
    const [pack] = JSON.parse(packed.stdout) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = pack!.files.map((f) => f.path);
    for (const needed of [
      'bin/drover.js',
      'dist/pipeline/cli.js',
      'dist/rules/schema.json',
      'dist/rules/schema-validator.cjs',
      'dist/ingest/sources/otlp/otlp.proto',
      'examples/rules/worker-crash-loop.yaml',
      'examples/demo/app.js',
    ])
      expect(files).toContain(needed);
    expect(
      files.filter((f) => f.startsWith('test/') || /\.test\.ts$|\.tsbuildinfo$/.test(f)),
    ).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts'))).toEqual([]);

    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), '{ "name": "try-drover", "private": true }\n');
    await run(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        join(dir, pack!.filename),
      ],
      { cwd: app, maxBuffer: 16 << 20 },
    );
    const binding = join('node_modules', 'better-sqlite3', 'build', 'Release');
    mkdirSync(join(app, binding), { recursive: true });
    copyFileSync(
      join(ROOT, binding, 'better_sqlite3.node'),
      join(app, binding, 'better_sqlite3.node'),
    );

    const version = await run(
      process.execPath,
      [join(app, 'node_modules', '.bin', 'drover'), '--version'],
      {
        cwd: app,
      },
    );
    expect(version.stdout).toBe('drover 0.1.0\n');

    const child = spawn(process.execPath, [join(app, 'node_modules', '.bin', 'drover'), 'demo'], {
      cwd: app,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(out).toContain('every scripted fault was remediated as expected');
    expect(code, out).toBe(0);
  }, 400_000);
});
