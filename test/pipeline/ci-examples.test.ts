import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { serverEnv } from '../support/drover.ts';
import { parseXml } from '../support/xml.ts';
import { BIN, ROOT } from './ci-fixtures.ts';

/**
 * The CI examples in examples/ci run as written: every `npx drover` line of the GitHub
 * workflow's `run:` steps and of the GitLab job's `script:` runs here through bin/drover.js
 * (with the workflow's own env/variables, on this repository's examples/rules), so a renamed
 * flag or a changed exit code breaks this test before it breaks a user's pipeline.
 */
const CI = join(ROOT, 'examples', 'ci');

/** The lines of a step that call drover; every other mention of drover is a test failure. */
function droverLines(script: string): string[] {
  const lines = script.split('\n').map((l) => l.trim());
  for (const l of lines)
    if (/\bdrover\b/.test(l) && !l.startsWith('npx drover') && !l.startsWith('#'))
      throw new Error(`a drover call this test would not run: ${l}`);
  return lines.filter((l) => l.startsWith('npx drover'));
}

/** Runs one line with bash in a scratch folder that sees the repository's examples/. */
function runLine(line: string, env: Record<string, string>, cwd: string) {
  const command = `node ${JSON.stringify(BIN)}${line.slice('npx drover'.length)}`;
  const r = spawnSync('bash', ['-c', command], {
    cwd,
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent', ...env },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drover-ci-example-'));
  symlinkSync(join(ROOT, 'examples'), join(dir, 'examples'));
  return dir;
}

describe('examples/ci', () => {
  it('the GitHub workflow: lint, test and backtest run clean on examples/rules', () => {
    const wf = parse(readFileSync(join(CI, 'github', 'drover-rules.yml'), 'utf8')) as {
      env: Record<string, string>;
      jobs: Record<string, { steps: Array<{ run?: string }> }>;
    };
    const dir = scratch();
    const summary = join(dir, 'step-summary.md');
    writeFileSync(summary, '');
    const lines = Object.values(wf.jobs).flatMap((j) =>
      j.steps.flatMap((s) => (s.run ? droverLines(s.run) : [])),
    );
    expect(lines.map((l) => l.split(' ').slice(0, 4).join(' '))).toEqual([
      'npx drover rules lint',
      'npx drover rules test',
      'npx drover backtest --rules',
      'npx drover rules diff',
    ]);
    // The diff needs a git history: test/pipeline/ci-pr-comment.test.ts runs it.
    for (const line of lines.filter((l) => !l.startsWith('npx drover rules diff'))) {
      const r = runLine(line, { ...wf.env, GITHUB_STEP_SUMMARY: summary }, dir);
      expect(r.code, `${line}\n${r.stdout}${r.stderr}`).toBe(0);
      // Clean rules: no annotation at all.
      if (line.includes('--format github')) expect(r.stdout, line).toBe('');
    }
    const table = readFileSync(summary, 'utf8');
    expect(table).toContain('| at | rule |');
    expect(table).toContain('checkout-error-burst');
    expect(table).toContain('fatal-anywhere');
  });

  it('the GitLab job: JUnit reports where artifacts:reports:junit reads them', () => {
    const ci = parse(readFileSync(join(CI, 'gitlab', '.gitlab-ci.yml'), 'utf8')) as Record<
      string,
      unknown
    > & { variables: Record<string, string> };
    const job = ci['drover-rules'] as {
      script: string[];
      artifacts: { when: string; paths: string[]; reports: { junit: string[] } };
    };
    const dir = scratch();
    const lines = job.script.flatMap(droverLines);
    expect(lines).toHaveLength(4);
    for (const line of lines.filter((l) => !l.startsWith('npx drover rules diff'))) {
      const r = runLine(line, ci.variables, dir);
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
    }
    expect(job.artifacts.when).toBe('always');
    expect(job.artifacts.reports.junit).toEqual(['drover-lint.xml', 'drover-test.xml']);
    for (const report of job.artifacts.reports.junit) {
      const root = parseXml(readFileSync(join(dir, report), 'utf8'));
      expect(root.name, report).toBe('testsuites');
      expect(Number(root.attrs.tests), report).toBeGreaterThanOrEqual(10);
      expect(root.attrs.failures, report).toBe('0');
    }
    expect(existsSync(join(dir, 'drover-backtest.md'))).toBe(true);
    expect(readFileSync(join(dir, 'drover-backtest.md'), 'utf8')).toContain('fatal-anywhere');
  });
});
