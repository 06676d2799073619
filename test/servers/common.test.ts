import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitedEarly, startProcess, startRetrying, waitFor } from './common.ts';

const dir = mkdtempSync(join(tmpdir(), 'drover-servers-common-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A server that fails as a real one does when its port was taken: it logs why and exits 1. */
function failingServer(log: string) {
  return startProcess(
    process.execPath,
    ['-e', "console.error('BindException: Address already in use'); process.exit(1)"],
    { cwd: dir, logFile: join(dir, log) },
  );
}

describe('server start-up', () => {
  it('says why a server exited, from the end of its log', async () => {
    const child = failingServer('a.log');
    const err = await waitFor('a server', async () => false, 10_000, child).catch(
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(ExitedEarly);
    expect((err as Error).message).toMatch(
      /exited with 1; its log ends:\nBindException: Address already in use/,
    );
  });

  it('starts again after an early exit, and not after a time-out', async () => {
    let tries = 0;
    const started = await startRetrying(async () => {
      tries++;
      if (tries < 3) {
        await waitFor('a server', async () => false, 10_000, failingServer(`b${tries}.log`));
      }
      return 'up';
    });
    expect([started, tries]).toEqual(['up', 3]);

    let slow = 0;
    const err = await startRetrying(async () => {
      slow++;
      await waitFor('a slow server', async () => false, 300);
    }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toBe('a slow server: not ready after 0.3s');
    expect(slow).toBe(1);
  });
});
