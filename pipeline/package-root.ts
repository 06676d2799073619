import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The package's root, which holds examples/: the first folder above `from` with a
 * package.json (above the sources, or above dist/ when compiled).
 */
export function packageRoot(from: string = import.meta.dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return dirname(from);
  }
}
