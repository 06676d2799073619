import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * bin/drover.js runs the compiled code in dist/. Tests and benchmarks that spawn it call
 * this first: when any source the build compiles (or the build's configuration) is newer
 * than the last build, `npm run build` runs again (tsc is incremental), so a stale dist/
 * is never what a test exercises. With nothing changed it costs a walk of the sources.
 */
export const ROOT = join(import.meta.dirname, '..', '..');
const SOURCES = ['ingest', 'rules', 'actions', 'dashboards', 'pipeline'];
const CONFIG = ['tsconfig.json', 'tsconfig.build.json', 'package.json'];
const STAMP = join(ROOT, 'dist', '.built');

function newest(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let t = 0;
  for (const entry of readdirSync(path)) t = Math.max(t, newest(join(path, entry)));
  return t;
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** Builds dist/ when it is missing or older than a source; returns whether it built. */
export function ensureBuilt(): boolean {
  const sources = Math.max(
    ...SOURCES.map((d) => newest(join(ROOT, d))),
    ...CONFIG.map((f) => mtime(join(ROOT, f))),
  );
  if (mtime(STAMP) >= sources) return false;
  const began = Date.now();
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  writeFileSync(STAMP, '');
  // The stamp takes the sources' newest time at least, so a clock behind a file does not
  // make every run rebuild.
  const at = new Date(Math.max(Date.now(), sources));
  utimesSync(STAMP, at, at);
  process.stderr.write(`[build] dist/ rebuilt in ${((Date.now() - began) / 1000).toFixed(1)}s\n`);
  return true;
}
