import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Diagnostic } from './yaml.ts';

/**
 * The rule files under `path`, each once. Entries whose names start with a dot are
 * skipped: `.git`, editors' `.x.yaml.swp`, and the `..data` / `..2026_…` folders a
 * Kubernetes ConfigMap mount keeps beside the symlinks that name its keys. Symlinks are
 * followed, and files and folders are told apart by their real paths, so a file reached
 * twice (a symlink, a folder named twice, a cycle) is read once.
 */
export async function collectFiles(
  path: string,
  diagnostics: Diagnostic[],
  seen: Set<string>,
  top = false,
): Promise<string[]> {
  return visitProbed(await probe(path), diagnostics, seen, top);
}

type Probe =
  | { path: string; isDirectory: boolean; real: string }
  | { path: string; error: NodeJS.ErrnoException };

/** stat and realpath of one path; an error is kept for the caller to report in order. */
async function probe(path: string): Promise<Probe> {
  try {
    // Both at once, but the error reported is always stat's when both fail: whichever
    // rejected first would make the diagnostic depend on timing.
    const [s, real] = await Promise.allSettled([stat(path), realpath(path)]);
    if (s.status === 'rejected') throw s.reason;
    if (real.status === 'rejected') throw real.reason;
    return { path, isDirectory: s.value.isDirectory(), real: real.value };
  } catch (err) {
    return { path, error: err as NodeJS.ErrnoException };
  }
}

async function visitProbed(
  p: Probe,
  diagnostics: Diagnostic[],
  seen: Set<string>,
  top: boolean,
): Promise<string[]> {
  const { path } = p;
  if ('error' in p) {
    // A dangling link that could not have been a rule file is none of the rules' business.
    if (!top && !isRuleFileName(basename(path))) return [];
    diagnostics.push({
      file: path,
      line: 1,
      col: 1,
      message:
        p.error.code === 'ENOENT' && top
          ? 'no such file or folder'
          : `cannot read: ${p.error.message}`,
      severity: 'error',
    });
    return [];
  }
  // A file named on the command line or in rules.paths is read whatever its name.
  if (!p.isDirectory && !top && !isRuleFileName(basename(path))) return [];
  if (seen.has(p.real)) return [];
  seen.add(p.real);
  if (!p.isDirectory) return [path];
  const entries = await readdir(path, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  const wanted = entries.filter(
    (e) =>
      !e.name.startsWith('.') && (e.isDirectory() || e.isSymbolicLink() || isRuleFileName(e.name)),
  );
  // The entries of one folder are probed together (one round of file system calls, not
  // one per file), then visited in name order, so which of two paths to the same file is
  // kept does not depend on which probe finished first.
  const probes = await Promise.all(wanted.map((e) => probe(join(path, e.name))));
  const out: string[] = [];
  for (const q of probes) out.push(...(await visitProbed(q, diagnostics, seen, false)));
  return out;
}

export function isRuleFileName(name: string): boolean {
  return /\.ya?ml$/.test(name) && !/\.test\.ya?ml$/.test(name);
}
