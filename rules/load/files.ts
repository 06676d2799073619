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
  let s: Awaited<ReturnType<typeof stat>>;
  let real: string;
  try {
    s = await stat(path);
    real = await realpath(path);
  } catch (err) {
    // A dangling link that could not have been a rule file is none of the rules' business.
    if (!top && !isRuleFileName(basename(path))) return [];
    const code = (err as NodeJS.ErrnoException).code;
    diagnostics.push({
      file: path,
      line: 1,
      col: 1,
      message:
        code === 'ENOENT' && top
          ? 'no such file or folder'
          : `cannot read: ${(err as Error).message}`,
      severity: 'error',
    });
    return [];
  }
  // A file named on the command line or in rules.paths is read whatever its name.
  if (!s.isDirectory() && !top && !isRuleFileName(basename(path))) return [];
  if (seen.has(real)) return [];
  seen.add(real);
  if (!s.isDirectory()) return [path];
  const out: string[] = [];
  const entries = await readdir(path, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || e.isSymbolicLink() || isRuleFileName(e.name))
      out.push(...(await collectFiles(join(path, e.name), diagnostics, seen)));
  }
  return out;
}

export function isRuleFileName(name: string): boolean {
  return /\.ya?ml$/.test(name) && !/\.test\.ya?ml$/.test(name);
}
