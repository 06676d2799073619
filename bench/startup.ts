import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBuilt, ROOT } from '../test/support/build.ts';

/**
 * Whole-process start-up of the CLI: `drover --version`, `drover rules lint
 * examples/rules` (11 rules and their tests) and `drover rules lint` of 100 rules (the
 * examples' rule files copied under other names until there are 100: issue 17's
 * figure), each the median wall time of N runs, taken in turns with `node -e 0` (the
 * baseline: what starting Node itself costs on this machine at this moment) so the
 * ratios share the machine's noise. The targets are 0.2 s and 0.5 s; on a loaded machine
 * read the ratios. `--bin FILE` times another drover.js (an older checkout, say).
 */
function hundredRules(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-rules-'));
  const examples = join(ROOT, 'examples', 'rules');
  const files = readdirSync(examples).filter(
    (f) => f.endsWith('.yaml') && !f.endsWith('.test.yaml'),
  );
  for (let i = 0; i < 100; i++) {
    const text = readFileSync(join(examples, files[i % files.length]!), 'utf8');
    writeFileSync(join(dir, `rule-${i}.yaml`), text.replace(/^name: (.*)$/m, `name: $1-${i}`));
  }
  return dir;
}

export async function startup(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const runs = Number(args[args.indexOf('--runs') + 1] ?? 0) || 11;
  const binArg = args.indexOf('--bin');
  const bin = binArg >= 0 ? args[binArg + 1]! : join(ROOT, 'bin', 'drover.js');
  if (binArg < 0) ensureBuilt();
  const hundred = hundredRules();
  const cases: Record<string, string[]> = {
    'node -e 0': ['-e', '0'],
    'drover --version': [bin, '--version'],
    'drover rules lint examples/rules': [bin, 'rules', 'lint', join(ROOT, 'examples', 'rules')],
    'drover rules lint (100 rules)': [bin, 'rules', 'lint', hundred],
  };
  const times: Record<string, number[]> = Object.fromEntries(
    Object.keys(cases).map((k) => [k, []]),
  );
  for (let i = 0; i < runs; i++)
    for (const [name, argv] of Object.entries(cases)) {
      const began = process.hrtime.bigint();
      const child = spawnSync(process.execPath, argv, { cwd: ROOT, encoding: 'utf8' });
      const s = Number(process.hrtime.bigint() - began) / 1e9;
      if (child.status !== 0) {
        process.stderr.write(`${name} exited with ${child.status}:\n${child.stderr}\n`);
        rmSync(hundred, { recursive: true, force: true });
        return 1;
      }
      times[name]!.push(s);
    }
  rmSync(hundred, { recursive: true, force: true });
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const base = median(times['node -e 0']!);
  const targets: Record<string, number> = {
    'drover --version': 0.2,
    'drover rules lint examples/rules': 0.5,
    'drover rules lint (100 rules)': 0.5,
  };
  const out = Object.fromEntries(
    Object.entries(times).map(([name, xs]) => [
      name,
      {
        median_s: Number(median(xs).toFixed(3)),
        vs_node: Number((median(xs) / base).toFixed(2)),
        ...(targets[name] !== undefined && { target_s: targets[name] }),
      },
    ]),
  );
  if (json) process.stdout.write(`${JSON.stringify({ runs, startup: out })}\n`);
  else {
    process.stdout.write(`whole-process start-up (${runs} runs each, in turns, median):\n`);
    for (const [name, r] of Object.entries(out))
      process.stdout.write(
        `  ${name.padEnd(34)} ${r.median_s.toFixed(3)} s  ${r.vs_node}× node -e 0${r.target_s ? `  (target ${r.target_s} s)` : ''}\n`,
      );
  }
  return 0;
}
