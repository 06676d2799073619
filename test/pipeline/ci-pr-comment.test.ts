import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { serverEnv } from '../support/drover.ts';
import { BIN, ROOT } from './ci-fixtures.ts';

/**
 * The pull-request half of examples/ci, run as written on a scratch git repository with two
 * commits: the base branch (pushed to a local `origin`) holds this repository's example
 * rules; the change removes one rule and lowers another's threshold (its rule test updated too). The GitHub steps run
 * with bash (a `gh` on PATH records what it would post); the GitLab script runs whole, its
 * `git fetch` against the local origin and its `curl` against a local HTTP server on the
 * notes path, which receives the comment body exactly as GitLab would.
 */
const CI = join(ROOT, 'examples', 'ci');

let base: string;
let work: string;

function sh(cwd: string, script: string, env: Record<string, string> = {}) {
  const r = spawnSync('bash', ['-ec', script], {
    cwd,
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent', ...env },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `npx drover …` runs this checkout's bin; every other npx call is refused. */
const NPX = `npx() { if [ "$1" = drover ]; then shift; node ${JSON.stringify(BIN)} "$@"; else echo "npx $1: not in this test" >&2; return 2; fi; }\n`;

const GIT = '-c user.name=ci -c user.email=ci@example.com';

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'drover-ci-pr-'));
  const origin = join(base, 'origin.git');
  work = join(base, 'work');
  mkdirSync(join(work, 'examples', 'ci'), { recursive: true });
  cpSync(join(ROOT, 'examples', 'rules'), join(work, 'examples', 'rules'), { recursive: true });
  cpSync(join(CI, 'sample-events.ndjson'), join(work, 'examples', 'ci', 'sample-events.ndjson'));
  const r = sh(
    work,
    `git init -q --bare -b main ${JSON.stringify(origin)}
     git init -q -b main
     git remote add origin ${JSON.stringify(origin)}
     git add -A && git ${GIT} commit -qm 'rules as they are'
     git push -q origin main
     git checkout -qb change
     git rm -q examples/rules/fatal-anywhere.yaml examples/rules/fatal-anywhere.test.yaml
     sed -i 's/num_events: 50/num_events: 45/' examples/rules/checkout-error-burst.yaml
     sed -i 's/at: 49s/at: 44s/; s/count: 50/count: 45/; s/at: 70s/at: 75s/' examples/rules/checkout-error-burst.test.yaml
     git ${GIT} commit -qam 'rules as changed'`,
  );
  expect(r.code, r.stderr).toBe(0);
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

/** What the change did on the sample: one rule gone, one alert earlier. */
function expectCommentBody(body: string) {
  expect(body).toContain('### drover rules diff');
  expect(body).toContain('| `fatal-anywhere` (rule removed) | 0 | 1 | 0 | changed |');
  expect(body).toContain('| `checkout-error-burst` | 0 | 0 | 1 |');
  expect(body).toMatch(/\| moved \| 2024-01-01T09:00:59\.500Z \| 2024-01-01T09:00:54\.500Z \|/);
  expect(body.length).toBeLessThan(60_000);
}

describe('examples/ci on a pull request', () => {
  it('GitHub: the diff step writes the comment and gh posts it to the pull request', () => {
    const wf = parse(readFileSync(join(CI, 'github', 'drover-rules.yml'), 'utf8')) as {
      permissions: Record<string, string>;
      env: Record<string, string>;
      jobs: Record<
        string,
        { steps: Array<{ name?: string; run?: string; env?: Record<string, string> }> }
      >;
    };
    expect(wf.permissions['pull-requests']).toBe('write');
    const steps = Object.values(wf.jobs).flatMap((j) => j.steps);
    const checkout = steps.find((s) =>
      (s as { uses?: string }).uses?.startsWith('actions/checkout'),
    );
    expect((checkout as { with?: { 'fetch-depth'?: number } }).with?.['fetch-depth']).toBe(0);
    const diff = steps.find((s) => s.run?.includes('drover rules diff'));
    const comment = steps.find((s) => s.run?.includes('gh pr comment'));
    expect(diff && comment, 'a diff step and a comment step').toBeTruthy();

    // gh as the runner has it, recording what it was asked to post.
    const bin = join(base, 'gh-bin');
    mkdirSync(bin, { recursive: true });
    const posted = join(base, 'gh-posted');
    writeFileSync(
      join(bin, 'gh'),
      `#!/bin/bash\nprintf '%s\\n' "$@" > ${JSON.stringify(`${posted}.args`)}\n` +
        `while [ $# -gt 0 ]; do [ "$1" = --body-file ] && cp "$2" ${JSON.stringify(posted)}; shift; done\n`,
    );
    chmodSync(join(bin, 'gh'), 0o755);
    const env = {
      ...wf.env,
      BASE_REF: 'main',
      PR: '42',
      GH_TOKEN: 'x',
      PATH: `${bin}:${process.env.PATH ?? ''}`,
    };
    for (const step of [diff, comment]) {
      const r = sh(work, NPX + step!.run!, env);
      expect(r.code, `${step!.name}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    expect(readFileSync(`${posted}.args`, 'utf8').split('\n').slice(0, 3)).toEqual([
      'pr',
      'comment',
      '42',
    ]);
    const body = readFileSync(posted, 'utf8');
    expect(body).toBe(readFileSync(join(work, 'rules-diff.md'), 'utf8'));
    expectCommentBody(body);
  });

  it('GitLab: the job fetches the target branch and posts the diff as a merge request note', async () => {
    const ci = parse(readFileSync(join(CI, 'gitlab', '.gitlab-ci.yml'), 'utf8')) as Record<
      string,
      unknown
    > & { variables: Record<string, string> };
    const job = ci['drover-rules'] as { script: string[]; artifacts: { paths: string[] } };
    expect(ci.variables.GIT_DEPTH).toBe(0);
    expect(job.artifacts.paths).toContain('rules-diff.md');

    const notes: Array<{ url: string; token: string; body: string }> = [];
    const server = createServer((req, res) => {
      let data = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (data += c));
      req.on('end', () => {
        notes.push({
          url: req.url ?? '',
          token: String(req.headers['private-token']),
          body: new URLSearchParams(data).get('body') ?? '',
        });
        res.writeHead(201, { 'content-type': 'application/json' }).end('{"id":1}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const env = {
        ...Object.fromEntries(Object.entries(ci.variables).map(([k, v]) => [k, String(v)])),
        CI_MERGE_REQUEST_IID: '7',
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME: 'main',
        CI_API_V4_URL: `http://127.0.0.1:${port}/api/v4`,
        CI_PROJECT_ID: '99',
        MR_NOTE_TOKEN: 'glpat-test',
      };
      // The script's entries run in one shell, as GitLab runs them; `exit $status` last.
      // Asynchronously: the notes server answers from this process's event loop.
      const script = spawn('bash', ['-c', `${NPX}${job.script.join('\n')}`], {
        cwd: work,
        env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent', ...env },
        timeout: 120_000,
      });
      let stderr = '';
      script.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      const [code] = (await once(script, 'close')) as [number | null];
      // 0: the change's rules lint and pass their tests.
      expect(code, stderr).toBe(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(notes).toHaveLength(1);
    expect(notes[0]!.url).toBe('/api/v4/projects/99/merge_requests/7/notes');
    expect(notes[0]!.token).toBe('glpat-test');
    expect(notes[0]!.body).toBe(readFileSync(join(work, 'rules-diff.md'), 'utf8'));
    expectCommentBody(notes[0]!.body);
    for (const path of job.artifacts.paths) expect(existsSync(join(work, path)), path).toBe(true);
  });
});
