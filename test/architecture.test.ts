import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The layer map in eslint.config.js says which folder may import which; this says the
 * other half of "no arrow runs back up, no circle": no two source files reach each other
 * through their relative imports (type-only imports included, since a circle of types is
 * still two units that cannot be understood apart).
 */
const ROOT = join(import.meta.dirname, '..');
const TREES = ['ingest', 'rules', 'actions', 'pipeline', 'dashboards', 'bench'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return /\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The relative imports of a file, resolved to paths under ROOT. */
export function importsOf(file: string, text: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (const m of text.matchAll(re))
    out.push(relative(ROOT, resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
  return out;
}

/** Every circle of the graph, each as the files on it (Tarjan's strongly connected parts). */
export function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const part: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        part.push(w);
      } while (w !== v);
      if (part.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(part.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('the import graph', () => {
  it('finds a circle when there is one (the check can fail)', () => {
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(circles(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(importsOf(join(ROOT, 'x', 'y.ts'), "import type { A } from '../z/a.ts';")).toEqual([
      'z/a.ts',
    ]);
  });

  it('has no circle among the source files', () => {
    const graph = new Map<string, string[]>();
    for (const tree of TREES)
      for (const file of sources(join(ROOT, tree)))
        graph.set(relative(ROOT, file), importsOf(file, readFileSync(file, 'utf8')));
    expect(graph.size).toBeGreaterThan(150);
    expect(circles(graph)).toEqual([]);
  });
});
