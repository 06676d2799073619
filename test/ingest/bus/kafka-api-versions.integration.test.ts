import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { describe, expect, inject, it } from 'vitest';

/**
 * kafkajs is unmaintained: it picks, per API, the highest version it implements up to
 * the broker's maximum, and ignores the broker's minimum. A broker that raises its floor
 * above what kafkajs implements (Kafka 4 removed many old versions) would fail only at
 * run time, on the first such request. This test reads the real broker's ApiVersions
 * and fails in CI instead.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

const require = createRequire(import.meta.url);
const { requests } = require('kafkajs/src/protocol/requests') as {
  requests: Record<string, { versions: string[] }>;
};
const apiKeys = require('kafkajs/src/protocol/requests/apiKeys') as Record<string, number>;

/** The APIs Drover's Kafka bus sends (producer with idempotence, consumer groups, admin). */
export const DROVER_APIS = [
  'Produce',
  'Fetch',
  'ListOffsets',
  'Metadata',
  'OffsetCommit',
  'OffsetFetch',
  'GroupCoordinator',
  'JoinGroup',
  'Heartbeat',
  'LeaveGroup',
  'SyncGroup',
  'DescribeGroups',
  'ApiVersions',
  'CreateTopics',
  'InitProducerId',
  'DescribeConfigs',
];

type BrokerVersions = Map<number, { min: number; max: number }>;

/** What kafkajs would send for each API against these broker ranges, and why it fails. */
export function negotiationProblems(broker: BrokerVersions, apis: string[]): string[] {
  const problems: string[] = [];
  for (const name of apis) {
    const key = apiKeys[name];
    const implemented = (requests[name]?.versions ?? []).map(Number);
    if (key === undefined || implemented.length === 0) {
      problems.push(`${name}: kafkajs does not implement it`);
      continue;
    }
    const range = broker.get(key);
    if (!range) {
      problems.push(`${name} (key ${key}): the broker does not support it`);
      continue;
    }
    // kafkajs's lookup(): min(best implemented, broker max); the broker's min is ignored.
    const sent = Math.min(Math.max(...implemented), range.max);
    if (sent < range.min || !implemented.includes(sent))
      problems.push(
        `${name} (key ${key}): kafkajs sends v${sent}, the broker accepts v${range.min}..v${range.max}`,
      );
  }
  return problems;
}

/** ApiVersions v0 over a plain socket: every broker answers it, whatever else it dropped. */
function apiVersions(address: string): Promise<BrokerVersions> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), address.split(':').pop()];
  const clientId = Buffer.from('drover-api-versions');
  const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length);
  body.writeInt16BE(18, 0); // ApiVersions
  body.writeInt16BE(0, 2); // v0
  body.writeInt32BE(1, 4); // correlation id
  body.writeInt16BE(clientId.length, 8);
  clientId.copy(body, 10);
  const frame = Buffer.alloc(4 + body.length);
  frame.writeInt32BE(body.length, 0);
  body.copy(frame, 4);
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let received = Buffer.alloc(0);
    socket.setTimeout(10_000, () => socket.destroy(new Error('ApiVersions timed out')));
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 4 || received.length < 4 + received.readInt32BE(0)) return;
      socket.end();
      const error = received.readInt16BE(8);
      if (error !== 0) return reject(new Error(`ApiVersions error code ${error}`));
      const count = received.readInt32BE(10);
      const out: BrokerVersions = new Map();
      for (let i = 0, at = 14; i < count; i++, at += 6)
        out.set(received.readInt16BE(at), {
          min: received.readInt16BE(at + 2),
          max: received.readInt16BE(at + 4),
        });
      resolve(out);
    });
    socket.connect(Number(port), host, () => socket.write(frame));
  });
}

describe('kafkajs protocol versions', () => {
  it('reports an API whose broker minimum rose above what kafkajs implements', () => {
    const fetchKey = apiKeys.Fetch!;
    const fetchMax = Math.max(...requests.Fetch!.versions.map(Number));
    const broker: BrokerVersions = new Map([[fetchKey, { min: fetchMax + 1, max: fetchMax + 6 }]]);
    expect(negotiationProblems(broker, ['Fetch', 'Produce'])).toEqual([
      `Fetch (key ${fetchKey}): kafkajs sends v${fetchMax}, the broker accepts v${fetchMax + 1}..v${fetchMax + 6}`,
      `Produce (key ${apiKeys.Produce}): the broker does not support it`,
    ]);
  });

  describe.skipIf(!brokers)(
    `against the real broker${reason ? ` (skipped: ${reason})` : ''}`,
    () => {
      it('accepts the version kafkajs sends for every API Drover uses', async () => {
        const broker = await apiVersions(brokers!.split(',')[0]!);
        expect(broker.size).toBeGreaterThan(20);
        expect(negotiationProblems(broker, DROVER_APIS)).toEqual([]);
      });
    },
  );
});
