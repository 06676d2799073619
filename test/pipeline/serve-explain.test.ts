import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  adminHeaders,
  BIN,
  HOST_ERROR_BURST_RULE,
  killServes,
  serverEnv,
  startServe,
  stopServe,
  until,
} from '../support/drover.ts';
import { workdir } from '../support/drover.ts';

/**
 * Explaining an alert on the embedded back ends: a real `drover serve` (SQLite journal,
 * embedded index) fires a frequency rule on hostile events and acts through a real exec
 * adapter; GET /v1/alerts/ID answers admins only; after the server stopped, `drover
 * explain ID` reads the same chain from the files it left.
 */
afterEach(() => killServes());

const READ_TOKEN = 'read-only-token-of-the-explain-test';
const reader = { authorization: `Bearer ${READ_TOKEN}` };

interface Chain {
  id: string;
  alert: { rule: string; key: Record<string, unknown> };
  explanation: {
    rule: { name: string; hash: string; file: string };
    window: { from: string; to: string };
    figures: Record<string, unknown>;
    events: Array<Record<string, unknown>>;
    eventsSeen: number;
  };
  states: Array<{ state: string }>;
  decisions: Array<{
    decision: string;
    adapter: string;
    guards: Array<{ guard: string; passed: boolean; inputs: Record<string, unknown> }>;
  }>;
}

describe('drover explain and GET /v1/alerts/ID', () => {
  it('show the events, states and decisions of an alert, after a restart too', async () => {
    const dir = workdir('drover-explain-', {
      'rules/burst.yaml': HOST_ERROR_BURST_RULE,
    });
    const config = join(dir, 'drover.yaml');
    writeFileSync(
      config,
      `stateDir: state
listen: { port: 0, statsdPort: false, readTokens: [${READ_TOKEN}] }
rules: { paths: [rules], allowedLateness: 1s }
adapters:
  script: { type: exec, command: ${process.execPath}, args: ["-e", "0"] }
guards: { cooldown: 0s }
`,
    );
    const served = await startServe(config);
    const now = Date.now();
    // Hostile lines: a 300 KB message and an escape sequence for the terminal.
    const lines = [0, 1, 2].map((i) =>
      JSON.stringify({
        level: 50,
        time: now + i,
        hostname: 'web-1',
        name: 'web',
        msg: i === 0 ? 'x'.repeat(300_000) : `\u001b[2Jfailed ${i}`,
      }),
    );
    expect(
      (await fetch(`${served.url}/ingest`, { method: 'POST', body: lines.join('\n') })).status,
    ).toBe(200);
    const journal = await until('the action journaled', async () => {
      const r = (await (await fetch(`${served.url}/v1/actions`, { headers: reader })).json()) as {
        decisions: Array<{ alertId: string; decision: string }>;
      };
      return r.decisions.find((d) => d.decision === 'executed');
    });
    const id = journal.alertId;
    const url = `${served.url}/v1/alerts/${id}`;
    const stateDir = join(dir, 'state');

    // Admin only: no token, or a read token, is refused, even on loopback.
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: reader })).status).toBe(401);
    const admin = { authorization: adminHeaders(stateDir).authorization! };
    const res = await fetch(url, { headers: admin });
    expect(res.status).toBe(200);
    const chain = (await res.json()) as Chain;
    expect(chain.id).toBe(id);
    expect(chain.alert).toMatchObject({ rule: 'host-error-burst', key: { 'host.name': 'web-1' } });
    expect(chain.explanation.rule.file).toMatch(/rules\/burst\.yaml$/);
    expect(chain.explanation.rule.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(chain.explanation.figures).toMatchObject({ count: 3 });
    expect(
      Date.parse(chain.explanation.window.to) - Date.parse(chain.explanation.window.from),
    ).toBe(600_000);
    expect(chain.explanation.eventsSeen).toBe(3);
    expect(chain.explanation.events).toHaveLength(3);
    expect(String(chain.explanation.events[0]!.message)).toMatch(/… \(300000 characters\)$/);
    expect(chain.states.map((s) => s.state)).toEqual(['firing']);
    expect(chain.decisions).toHaveLength(1);
    expect(chain.decisions[0]).toMatchObject({ decision: 'executed', adapter: 'script' });
    expect(chain.decisions[0]!.guards.map((g) => g.guard)).toContain('cooldown');
    expect((await fetch(`${served.url}/v1/alerts/nope`, { headers: admin })).status).toBe(404);

    expect(await stopServe(served)).toBe(0);

    // After the stop, from the files alone.
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [BIN, 'explain', ...args, '--db', join(stateDir, 'actions.db')], {
        encoding: 'utf8',
        env: serverEnv(),
      });
    const json = cli(id, '--format', 'json');
    expect(json.status, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(chain);
    const text = cli(id);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain(`alert ${id}  rule host-error-burst (frequency)`);
    expect(text.stdout).toMatch(/window .+ \.\. /);
    expect(text.stdout).toMatch(/states:\n {2}\S+ {2}firing/);
    expect(text.stdout).toMatch(/executed +host-error-burst {2}script:kill-and-replace web-1/);
    expect(text.stdout).toMatch(/pass cooldown +\{"cooldownMs":0/);
    // Nothing an event wrote reaches the terminal raw.
    expect(text.stdout).not.toContain('\u001b');
    expect(text.stdout).toContain('\\u001b[2Jfailed 1');
    const unknown = cli('no-such-alert');
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('no alert no-such-alert');
  }, 60_000);
});
