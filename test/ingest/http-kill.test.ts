import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openEmbeddedBus } from '../../ingest/bus/index.ts';

describe('ingest endpoint durability', () => {
  it('a kill -9 mid-ingest loses no event whose request was acknowledged', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'drover-kill-')), 'bus.db');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'ingest-server.ts'), path],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const url = await new Promise<string>((resolve) =>
      child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())),
    );
    const acknowledged: number[] = [];
    let seq = 0;
    let stop = false;
    // Four clients post batches of 50 until the server dies under them.
    const client = async () => {
      while (!stop) {
        const ids = Array.from({ length: 50 }, () => seq++);
        const body = ids
          .map((id) => JSON.stringify({ message: `event ${id}`, id, 'service.name': 'kill-test' }))
          .join('\n');
        try {
          const res = await fetch(`${url}/ingest`, {
            method: 'POST',
            body,
            signal: AbortSignal.timeout(5_000),
          });
          if (res.status === 200) acknowledged.push(...ids);
        } catch {
          return; // the connection died with the server: this request was never acknowledged
        }
      }
    };
    const clients = Array.from({ length: 4 }, client);
    const began = Date.now();
    while (acknowledged.length < 5_000 && Date.now() - began < 20_000)
      await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    stop = true;
    await Promise.all(clients);
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r),
    );

    const bus = openEmbeddedBus({ path });
    const stored = new Set(bus.read('logs', 0, 10_000_000).map((m) => m.event.id as number));
    await bus.close();
    expect(acknowledged.length).toBeGreaterThanOrEqual(5_000);
    expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
  });
});
