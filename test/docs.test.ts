/**
 * The documentation a newcomer navigates: every relative link in README.md,
 * CONTRIBUTING.md, docs/*.md and bench/README.md names a file that exists (and, for a
 * link into a Markdown file with `#anchor`, a heading that exists), and the README stays
 * short enough to read: what Drover is, the two commands, status, one rule, links.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const README_MAX_LINES = 220;

function docFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(ROOT, 'docs', f));
  return [join(ROOT, 'README.md'), join(ROOT, 'CONTRIBUTING.md'), join(ROOT, 'bench', 'README.md')]
    .concat(docs)
    .filter((f) => existsSync(f));
}

/** The Markdown outside fenced code blocks and inline code spans, line by line. */
function proseLines(text: string): Array<{ line: number; text: string }> {
  const out: Array<{ line: number; text: string }> = [];
  let fence: string | undefined;
  text.split('\n').forEach((raw, i) => {
    const opening = /^\s*(```+|~~~+)/.exec(raw);
    if (opening) {
      const marker = opening[1]!;
      if (fence === undefined) fence = marker[0]!.repeat(marker.length);
      else if (raw.trim().startsWith(fence)) fence = undefined;
      return;
    }
    if (fence === undefined) out.push({ line: i + 1, text: raw.replace(/`[^`]*`/g, '``') });
  });
  return out;
}

/** `[text](target)` links, images included; the text may hold code spans. */
function links(text: string): Array<{ line: number; target: string }> {
  const found: Array<{ line: number; target: string }> = [];
  for (const { line, text: prose } of proseLines(text))
    for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g))
      found.push({ line, target: m[1]! });
  return found;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const { text: line } of proseLines(text.replace(/`([^`]*)`/g, '$1'))) {
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = h[1]!
      .toLowerCase()
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

function brokenLinks(file: string, text = readFileSync(file, 'utf8')): string[] {
  const broken: string[] = [];
  for (const { line, target } of links(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: …
    const [path = '', anchor] = target.split('#', 2);
    const where = `${relative(ROOT, file)}:${line}: ${target}`;
    const resolved = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
    if (!resolved.startsWith(ROOT + '/') && resolved !== ROOT) {
      broken.push(`${where} (points outside the repository)`);
      continue;
    }
    if (!existsSync(resolved)) {
      broken.push(`${where} (no such file)`);
      continue;
    }
    if (anchor && resolved.endsWith('.md') && statSync(resolved).isFile()) {
      if (!anchors(readFileSync(resolved, 'utf8')).has(anchor))
        broken.push(`${where} (no heading #${anchor})`);
    }
  }
  return broken;
}

describe('docs', () => {
  it('finds links and anchors as GitHub renders them (and the check does catch a bad one)', () => {
    const sample = [
      '# `deploy/`: the scaled set-up',
      "## Drover's own telemetry",
      '## Time',
      '## Time',
      '[a](x.md) and `[not](a-link.md)`',
      '```',
      '[not](a-link-either.md)',
      '```',
    ].join('\n');
    expect([...anchors(sample)]).toEqual([
      'deploy-the-scaled-set-up',
      'drovers-own-telemetry',
      'time',
      'time-1',
    ]);
    expect(links(sample).map((l) => l.target)).toEqual(['x.md']);
    const probe = '[a](rules.md#time) [b](nope.md) [c](rules.md#no-such-heading) [d](../../x)';
    expect(brokenLinks(join(ROOT, 'docs', 'probe.md'), probe)).toEqual([
      'docs/probe.md:1: nope.md (no such file)',
      'docs/probe.md:1: rules.md#no-such-heading (no heading #no-such-heading)',
      'docs/probe.md:1: ../../x (points outside the repository)',
    ]);
  });

  it('every relative link in README.md, CONTRIBUTING.md, docs/ and bench/ resolves', () => {
    const files = docFiles();
    expect(files.map((f) => relative(ROOT, f))).toEqual(
      expect.arrayContaining(['README.md', 'CONTRIBUTING.md', 'bench/README.md', 'docs/rules.md']),
    );
    expect(files.flatMap((f) => brokenLinks(f))).toEqual([]);
  });

  it(`README.md stays at most ${README_MAX_LINES} lines`, () => {
    const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').trimEnd().split('\n').length;
    expect(lines).toBeLessThanOrEqual(README_MAX_LINES);
  });
});
