import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { createKafkaBus, openEmbeddedBus } from '../../../../ingest/bus/index.ts';
import { until } from '../../../support/drover.ts';

const brokers = inject('kafkaBrokers');
const kafkaReason = inject('serverSkipReasons').kafka;

/**
 * Starts the endpoint over `target` in a child, posts batches from four clients until
 * 5,000 events are acknowledged, SIGKILLs the child, and returns the acknowledged ids.
 */
async function ingestUntilKilled(target: string): Promise<number[]> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'ingest-server.ts'), target],
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

  expect(acknowledged.length).toBeGreaterThanOrEqual(5_000);
  return acknowledged;
}

describe('ingest endpoint durability', () => {
  it('a kill -9 mid-ingest loses no event whose request was acknowledged (embedded bus)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'drover-kill-')), 'bus.db');
    const acknowledged = await ingestUntilKilled(path);
    const bus = openEmbeddedBus({ path });
    const stored = new Set(bus.read('logs', 0, 10_000_000).map((m) => m.event.id as number));
    await bus.close();
    expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
  });

  it.skipIf(!brokers)(
    `a kill -9 mid-ingest loses no event whose request was acknowledged (Kafka bus)${kafkaReason ? ` (skipped: ${kafkaReason})` : ''}`,
    async () => {
      const prefix = `hk${randomUUID().slice(0, 8)}.`;
      const acknowledged = await ingestUntilKilled(`kafka://${brokers}/${prefix}`);
      const bus = await createKafkaBus({ brokers: [brokers!], topicPrefix: prefix });
      const stored = new Set<number>();
      const consumer = await bus.consume({
        group: `${prefix}check`,
        topics: ['logs'],
        handler: async (b) => b.messages.forEach((m) => stored.add(m.event.id as number)),
      });
      await until(
        'every acknowledged event',
        () => acknowledged.every((id) => stored.has(id)),
        60_000,
      ).catch(() => {});
      await consumer.stop();
      await bus.close();
      expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
    },
    120_000,
  );
});
