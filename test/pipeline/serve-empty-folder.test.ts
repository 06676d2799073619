import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, killServes, serverEnv } from '../support/drover.ts';

const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples', 'rules');

describe('drover serve in an empty folder', () => {
  const dirs: string[] = [];
  afterEach(() => {
    killServes();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('starts with no rules, says where rules go and points at the examples', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'drover-empty-')));
    dirs.push(dir);
    // No configuration and no rules folder: the second command a newcomer types.
    const child = spawn(process.execPath, [BIN, 'serve'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...serverEnv(), DROVER_PORT: '0', DROVER_STATE_DIR: join(dir, '.drover') },
    });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    const served = await Promise.race([
      exited.then(() => false),
      (async () => {
        while (!log.includes('"msg":"drover is serving"'))
          await new Promise((r) => setTimeout(r, 50));
        return true;
      })(),
    ]);
    expect(served, log).toBe(true);
    const line = log.split('\n').find((l) => l.includes('no rules yet'));
    expect(line, log).toBeDefined();
    const entry = JSON.parse(line!) as { rules: string; examples: string; msg: string };
    expect(entry.rules).toBe(join(dir, 'rules'));
    expect(entry.msg).toContain(join(dir, 'rules'));
    expect(existsSync(join(entry.examples, 'worker-crash-loop.yaml'))).toBe(true);
    expect(realpathSync(entry.examples)).toBe(realpathSync(EXAMPLES));
    child.kill('SIGTERM');
    expect(await exited, log).toBe(0);
  }, 60_000);
});
