import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAdapters, ExecAdapter, ProcessAdapter } from '../../../actions/index.ts';

/** Real children that print their environment: what does Drover hand them? */
const PRINT_ENV = join(import.meta.dirname, '..', 'fixtures', 'print-env.js');
const ctx = { idempotencyKey: 'alert-1#0', rule: 'web-replica-silent' };
const SECRETS = {
  DROVER_TOKEN: 'drover-api-token',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'aws-secret',
  ELASTICSEARCH_URL: 'https://elastic:pw@es.internal:9200',
  KAFKA_BROKERS: 'kafka.internal:9092',
};
const saved: Record<string, string | undefined> = {};
beforeEach(() => {
  for (const [k, v] of Object.entries({ ...SECRETS, LC_TIME: 'C', SOME_OTHER: 'x' })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});
afterEach(() => {
  for (const [k, v] of Object.entries(saved))
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
});

async function printed(file: string): Promise<Record<string, string>> {
  const deadline = Date.now() + 10_000;
  while (!existsSync(file) || readFileSync(file, 'utf8') === '') {
    if (Date.now() > deadline) throw new Error(`${file} was never written`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
}

describe("children get a minimal environment, never Drover's secrets", () => {
  const dir = mkdtempSync(join(tmpdir(), 'drover-env-'));

  it('exec: the allowlist, its env and the DROVER_* of the action only', async () => {
    const out = join(dir, 'exec.json');
    const exec = new ExecAdapter('script', {
      command: process.execPath,
      args: [PRINT_ENV, out],
      env: { GREETING: 'hi' },
      inheritEnv: ['SOME_OTHER'],
    });
    await exec.killAndReplace('web-1', ctx);
    const env = await printed(out);
    for (const name of Object.keys(SECRETS)) expect(env).not.toHaveProperty(name);
    expect(env).toMatchObject({
      PATH: process.env.PATH,
      LC_TIME: 'C',
      SOME_OTHER: 'x',
      GREETING: 'hi',
      DROVER_TARGET: 'web-1',
      DROVER_OPERATION: 'kill-and-replace',
    });
    const drover = Object.keys(env).filter((k) => k.startsWith('DROVER_'));
    expect(drover.sort()).toEqual([
      'DROVER_IDEMPOTENCY_KEY',
      'DROVER_OPERATION',
      'DROVER_PARAMS_JSON',
      'DROVER_RULE',
      'DROVER_TARGET',
    ]);
  });

  it('process: every supervised replica, including a replacement', async () => {
    const out = (n: number) => join(dir, `web-${n}.json`);
    const fleet = new ProcessAdapter('fleet', {
      healthInterval: 0,
      services: {
        web: {
          command: process.execPath,
          args: [PRINT_ENV, dir],
          replicas: 1,
          env: { GREETING: 'hi' },
        },
      },
    });
    try {
      await fleet.start();
      const first = await printed(out(1));
      await fleet.killAndReplace('web-1');
      const second = await printed(out(2));
      for (const env of [first, second]) {
        for (const name of Object.keys(SECRETS)) expect(env).not.toHaveProperty(name);
        expect(env).not.toHaveProperty('SOME_OTHER');
        expect(env).toMatchObject({
          PATH: process.env.PATH,
          GREETING: 'hi',
          DROVER_SERVICE: 'web',
        });
      }
      expect(second.DROVER_REPLICA_ID).toBe('web-2');
    } finally {
      await fleet.close();
    }
  });

  it("refuses a configuration that would pass Drover's own secrets by name", async () => {
    await expect(
      createAdapters({
        x: { type: 'exec', command: '/bin/true', inheritEnv: ['AWS_SECRET_ACCESS_KEY'] },
      }),
    ).rejects.toThrow(/inheritEnv may not pass Drover's own AWS_SECRET_ACCESS_KEY/);
  });
});
