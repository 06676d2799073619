import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Event } from '../../../ingest/model/index.ts';
import { type BusMessage, createKafkaBus, type KafkaBus } from '../../../ingest/bus/index.ts';

const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

const log = (i: number, service = 'web'): Event => ({
  '@timestamp': 1_700_000_000_000 + i,
  'service.name': service,
  message: `line ${i}`,
  seq: i,
});

function until(predicate: () => boolean, ms = 30_000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (predicate()) resolve();
      else if (Date.now() - start > ms) reject(new Error('timed out'));
      else setTimeout(check, 25);
    };
    check();
  });
}

describe.skipIf(!brokers)(
  `Kafka bus against a real broker${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let bus: KafkaBus;
    let prefix: string;

    beforeAll(async () => {
      prefix = `t${randomUUID().slice(0, 8)}.`;
      bus = await createKafkaBus({
        brokers: [brokers!],
        topicPrefix: prefix,
        partitions: 3,
        maxEventBytes: 4096,
      });
    });
    afterAll(async () => {
      await bus?.close();
    });

    it('leaves its broker connections asleep while idle (no timer loop per connection)', async () => {
      // kafkajs 2.2.4 re-checks each connection's empty request queue every millisecond
      // once the connection has answered a request (ingest/bus/kafkajs.ts fixes it).
      const { prototype } = createRequire(import.meta.url)(
        'kafkajs/src/network/requestQueue/index.js',
      ) as { prototype: { checkPendingRequests: (...args: unknown[]) => void } };
      const original = prototype.checkPendingRequests;
      let checks = 0;
      prototype.checkPendingRequests = function (this: unknown, ...args: unknown[]) {
        checks++;
        original.apply(this, args);
      };
      // A bus of its own: the other tests count what their topics hold.
      const idle = await createKafkaBus({ brokers: [brokers!], topicPrefix: `${prefix}idle.` });
      try {
        // The producer's and the admin's connections each answer a request, then rest.
        expect((await idle.publish([log(0)])).accepted).toHaveLength(1);
        await idle.latest(['logs']);
        await new Promise((r) => setTimeout(r, 100));
        checks = 0;
        await new Promise((r) => setTimeout(r, 1_000));
        // An answered request (a metadata refresh, a fetch) checks once; the loop checked
        // about a thousand times a second per connection (1,536 here without the fix).
        expect(checks).toBeLessThan(100);
        // Requests still go out and are answered after the rest.
        expect((await idle.publish([log(1)])).accepted).toHaveLength(1);
      } finally {
        prototype.checkPendingRequests = original;
        await idle.close();
      }
    });

    it("a task consumer knows each partition's log end from its fetches, and reads the broker on asking", async () => {
      // A bus of its own: the other tests count what their topics hold.
      const own = await createKafkaBus({
        brokers: [brokers!],
        topicPrefix: `${prefix}ends.`,
        partitions: 3,
      });
      const seen: BusMessage[] = [];
      let assigned = false;
      const consumer = await own.consumeTasks(
        {
          group: `${prefix}ends`,
          topics: ['logs'],
          handler: async (b) => void seen.push(...b.messages),
        },
        { onAssigned: async () => void (assigned = true), onRebalancing: () => {} },
      );
      try {
        await until(() => assigned);
        expect(
          (await own.publish(Array.from({ length: 7 }, (_, i) => log(i, 'one')))).accepted,
        ).toHaveLength(7);
        await until(() => seen.length === 7);
        const at = `logs/${seen[0]!.partition}`;
        // From the fetch that brought the messages, with no request of its own.
        expect(consumer.ends().get(at)?.end).toBe(7);
        const before = consumer.ends().get(at)!.at;
        // Two reads asked at once: the second waits for a read that starts after it asked.
        await Promise.all([consumer.readEnds(), consumer.readEnds()]);
        expect([...consumer.ends().keys()].sort()).toEqual(['logs/0', 'logs/1', 'logs/2']);
        expect(consumer.ends().get(at)?.end).toBe(7);
        expect(consumer.ends().get(at)!.at).toBeGreaterThan(before);
        for (const p of [0, 1, 2].filter((p) => `logs/${p}` !== at))
          expect(consumer.ends().get(`logs/${p}`)?.end).toBe(0);
      } finally {
        await consumer.stop();
        await own.close();
      }
    });

    it("a task consumer's fetches bring every partition's log end, those with nothing new too, as the broker's", async () => {
      // A bus of its own: the other tests count what their topics hold.
      const own = await createKafkaBus({
        brokers: [brokers!],
        topicPrefix: `${prefix}fetched.`,
        partitions: 3,
      });
      const seen: BusMessage[] = [];
      let assigned = false;
      const consumer = await own.consumeTasks(
        {
          group: `${prefix}fetched`,
          topics: ['logs'],
          handler: async (b) => void seen.push(...b.messages),
        },
        { onAssigned: async () => void (assigned = true), onRebalancing: () => {} },
      );
      const keys = ['logs/0', 'logs/1', 'logs/2'];
      try {
        await until(() => assigned);
        // Nothing written and readEnds() never called: every partition's reading comes
        // from the fetches, which the broker answers empty after the fetch wait.
        await until(() => keys.every((k) => consumer.ends().get(k)?.end === 0), 10_000);
        expect(
          (await own.publish([log(0, 'one'), log(1, 'one'), log(2, 'one')])).accepted,
        ).toHaveLength(3);
        await until(() => seen.length === 3);
        const busy = `logs/${seen[0]!.partition}`;
        const quiet = keys.filter((k) => k !== busy);
        const quietAt = quiet.map((k) => consumer.ends().get(k)!.at);
        // Idle: the quiet partitions' readings are renewed by the fetches that bring
        // nothing (a fetch waits at most 1 s), with no request of the consumer's own.
        await until(() => quiet.every((k, i) => consumer.ends().get(k)!.at > quietAt[i]!), 5_000);
        // ...and equal the broker's, as the admin client reads them.
        const latest = await own.latest(['logs']);
        expect(Object.fromEntries(keys.map((k) => [k, consumer.ends().get(k)?.end]))).toEqual(
          latest,
        );
        expect(latest[busy]).toBe(3);
      } finally {
        await consumer.stop();
        await own.close();
      }
    });

    it('publishes with acks from the broker and delivers per key in order, offsets committed after the handler', async () => {
      const events = Array.from({ length: 30 }, (_, i) => log(i, `svc-${i % 3}`));
      const result = await bus.publish(events);
      expect(result.accepted).toHaveLength(30);
      const seen: BusMessage[] = [];
      const consumer = await bus.consume({
        group: `${prefix}g1`,
        topics: ['logs'],
        handler: async (b) => void seen.push(...b.messages),
      });
      await until(() => seen.length === 30);
      await consumer.stop();
      for (const service of ['svc-0', 'svc-1', 'svc-2']) {
        const mine = seen.filter((m) => m.key === service);
        expect(new Set(mine.map((m) => m.partition)).size).toBe(1);
        expect(mine.map((m) => m.event.seq)).toEqual(
          [...mine.map((m) => m.event.seq as number)].sort((a, b) => a - b),
        );
      }
      // The group's committed offsets cover everything it handled.
      const admin = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const [committed] = await admin.fetchOffsets({
        groupId: `${prefix}g1`,
        topics: [`${prefix}logs`],
      });
      await admin.disconnect();
      const total = committed!.partitions.reduce((n, p) => n + Number(p.offset), 0);
      expect(total).toBe(30);
    });

    it("sends addJson's events byte for byte, across its shared buffers, per key in order", async () => {
      // Events of 1 byte to 3 KiB written into the buffers batches share (64 KiB each, a
      // new one when the next event does not fit), sent as ranges of them, from batches
      // published concurrently: each value read back is its event's bytes exactly.
      const p = `${prefix}ranges.`;
      const codecs = ['none', 'lz4', 'gzip'] as const;
      for (const compression of codecs) {
        const writer = await createKafkaBus({
          brokers: [brokers!],
          topicPrefix: `${p}${compression}.`,
          partitions: 3,
          compression,
        });
        const sent = new Map<string, string[]>();
        try {
          await Promise.all(
            Array.from({ length: 4 }, async (_, w) => {
              for (let b = 0; b < 5; b++) {
                const batch = writer.batch();
                for (let i = 0; i < 100; i++) {
                  const n = w * 1000 + b * 100 + i;
                  const key = `svc-${n % 5}`;
                  const text = JSON.stringify({ n, pad: 'é'.repeat((n * 37) % 1500) });
                  const bytes = Buffer.from(text);
                  batch.addJson('logs', key, (buf, at) => {
                    if (at + bytes.length <= buf.length) buf.set(bytes, at);
                    return at + bytes.length;
                  });
                  if (!sent.has(key)) sent.set(key, []);
                  sent.get(key)!.push(text);
                }
                expect((await writer.publishBatch(batch)).rejected).toEqual([]);
              }
            }),
          );
        } finally {
          await writer.close();
        }
        const consumer = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING }).consumer({
          groupId: `${p}${compression}.raw`,
        });
        const got = new Map<string, string[]>();
        let seen = 0;
        await consumer.connect();
        try {
          await consumer.subscribe({ topic: `${p}${compression}.logs`, fromBeginning: true });
          await consumer.run({
            eachMessage: async ({ message }) => {
              const key = message.key!.toString();
              if (!got.has(key)) got.set(key, []);
              got.get(key)!.push(message.value!.toString());
              seen++;
            },
          });
          await until(() => seen === 2000);
        } finally {
          await consumer.disconnect();
        }
        // Each key's events in the order their publishes were acknowledged in: the
        // concurrent publishers interleave, so compare each key's events as sets and
        // each publisher's own events in order.
        for (const [key, texts] of sent) {
          const read = got.get(key)!;
          expect([...read].sort()).toEqual([...texts].sort());
          const of = (list: string[], w: number) =>
            list
              .map((t) => (JSON.parse(t) as { n: number }).n)
              .filter((n) => Math.floor(n / 1000) === w);
          for (let w = 0; w < 4; w++) expect(of(read, w)).toEqual(of(texts, w));
        }
      }
    });

    it('sends record batches lz4-compressed by default, gzip on request, and as they are with compression none', async () => {
      // What each bus wrote, as a plain kafkajs consumer fetches it: the Fetch responses'
      // sizes. The same 500 repetitive events shrink many times over with either codec,
      // gzip's to less than lz4's (12.2 k and 18.4 k bytes fetched here, the topic names
      // aside); a bus given no codec writes what lz4 writes.
      const fetched: Record<string, number> = {};
      for (const compression of ['default', 'lz4', 'gzip', 'none'] as const) {
        const p = `${prefix}${compression}.`;
        const writer = await createKafkaBus({
          brokers: [brokers!],
          topicPrefix: p,
          partitions: 1,
          ...(compression !== 'default' && { compression }),
        });
        try {
          const events = Array.from({ length: 500 }, (_, i) => ({
            ...log(i),
            message: 'the same words again and again '.repeat(8),
          }));
          expect((await writer.publish(events)).accepted).toHaveLength(500);
        } finally {
          await writer.close();
        }
        const consumer = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING }).consumer({
          groupId: `${p}raw`,
        });
        let bytes = 0;
        let seen = 0;
        consumer.on(consumer.events.REQUEST, ({ payload }) => {
          if (payload.apiName === 'Fetch') bytes += payload.size;
        });
        await consumer.connect();
        try {
          await consumer.subscribe({ topic: `${p}logs`, fromBeginning: true });
          await consumer.run({ eachMessage: async () => void seen++ });
          await until(() => seen === 500);
        } finally {
          await consumer.disconnect();
        }
        fetched[compression] = bytes;
      }
      expect(fetched.none).toBeGreaterThan(150_000);
      expect(fetched.none).toBeGreaterThan(fetched.lz4! * 5);
      expect(fetched.lz4).toBeGreaterThan(fetched.gzip! * 1.25);
      expect(Math.abs(fetched.default! - fetched.lz4!)).toBeLessThan(fetched.lz4! * 0.05);
    });

    it("writes lz4 the broker decompresses and validates, and reads the broker's own lz4", async () => {
      // Topics whose compression.type differs from what the producer sends: the broker
      // decompresses each batch (Kafka's lz4-java, checking the frame's descriptor
      // checksum) and recompresses it, refusing the produce if it cannot. Topic `producer`:
      // the batches are stored as sent, and the broker still reads every record to validate.
      const events = Array.from({ length: 500 }, (_, i) => ({
        ...log(i),
        message: `the same words again and again ${'é'.repeat(i % 50)} `.repeat(8),
      }));
      const cases = [
        { name: 'lz4', codec: 'lz4', topicCodec: undefined },
        { name: 'lz4-to-gzip', codec: 'lz4', topicCodec: 'gzip' },
        { name: 'none-to-lz4', codec: 'none', topicCodec: 'lz4' },
      ] as const;
      const admin = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const fetched: Record<string, number> = {};
      try {
        for (const c of cases) {
          const p = `${prefix}${c.name}.`;
          if (c.topicCodec)
            await admin.createTopics({
              waitForLeaders: true,
              topics: [
                {
                  topic: `${p}logs`,
                  numPartitions: 1,
                  configEntries: [{ name: 'compression.type', value: c.topicCodec }],
                },
              ],
            });
          const writer = await createKafkaBus({
            brokers: [brokers!],
            topicPrefix: p,
            partitions: 1,
            compression: c.codec,
          });
          try {
            expect((await writer.publish(events)).accepted).toHaveLength(500);
          } finally {
            await writer.close();
          }
          // Read back by a plain kafkajs consumer (kafka-fetch.ts decodes for it).
          const consumer = new Kafka({
            brokers: [brokers!],
            logLevel: logLevel.NOTHING,
          }).consumer({ groupId: `${p}raw` });
          const seen: string[] = [];
          let bytes = 0;
          consumer.on(consumer.events.REQUEST, ({ payload }) => {
            if (payload.apiName === 'Fetch') bytes += payload.size;
          });
          await consumer.connect();
          try {
            await consumer.subscribe({ topic: `${p}logs`, fromBeginning: true });
            await consumer.run({
              eachMessage: async ({ message }) => void seen.push(message.value!.toString()),
            });
            await until(() => seen.length === 500);
          } finally {
            await consumer.disconnect();
          }
          expect(seen.map((v) => (JSON.parse(v) as Event).message)).toEqual(
            events.map((e) => e.message),
          );
          fetched[c.name] = bytes;
        }
      } finally {
        await admin.disconnect();
      }
      // Both lz4s (ours, the broker's) shrink the repetitive events many times over, to
      // about the same size (18.4 k and 18.5 k bytes fetched here), and less than gzip
      // does (12.2 k): what was stored as sent is lz4, not gzip.
      expect(fetched.lz4).toBeLessThan(60_000);
      expect(fetched['none-to-lz4']).toBeLessThan(60_000);
      expect(fetched.lz4).toBeLessThan(fetched['none-to-lz4']! * 1.15);
      expect(fetched.lz4).toBeGreaterThan(fetched['lz4-to-gzip']! * 1.25);
    });

    it('redelivers a batch whose handler failed, and a restarted consumer resumes at its committed offset', async () => {
      await bus.publish([100, 101].map((i) => log(i, 'redeliver')));
      let attempts = 0;
      const handled: number[] = [];
      let consumer = await bus.consume({
        group: `${prefix}g2`,
        topics: ['logs'],
        handler: async (b) => {
          const mine = b.messages.filter((m) => m.key === 'redeliver');
          if (mine.length > 0 && attempts++ < 2) throw new Error('down');
          handled.push(...mine.map((m) => m.event.seq as number));
        },
      });
      await until(() => handled.length === 2);
      expect(attempts).toBe(3);
      await consumer.stop();

      await bus.publish([102].map((i) => log(i, 'redeliver')));
      const after: number[] = [];
      consumer = await bus.consume({
        group: `${prefix}g2`,
        topics: ['logs'],
        handler: async (b) =>
          void after.push(
            ...b.messages.filter((m) => m.key === 'redeliver').map((m) => m.event.seq as number),
          ),
      });
      await until(() => after.length >= 1);
      await new Promise((r) => setTimeout(r, 500));
      expect(after).toEqual([102]);
      await consumer.stop();
    });

    it('dead-letters a message the handler keeps failing, with why, and moves on past it', async () => {
      await bus.publish([200, 201, 202, 203, 204].map((i) => log(i, 'poison')));
      const handled: number[] = [];
      const consumer = await bus.consume({
        group: `${prefix}g3`,
        topics: ['logs'],
        maxAttempts: 2,
        // Atomic, as the contract asks: checks every message before applying any.
        handler: async (b) => {
          const mine = b.messages.filter((m) => m.key === 'poison');
          if (mine.some((m) => m.event.seq === 202)) throw new Error('poison at 202');
          handled.push(...mine.map((m) => m.event.seq as number));
        },
      });
      await until(() => handled.length === 4);
      await new Promise((r) => setTimeout(r, 500));
      await consumer.stop();
      expect(handled).toEqual([200, 201, 203, 204]);
      const kafka = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING });
      const reader = kafka.consumer({ groupId: `${prefix}dl-check-2` });
      await reader.connect();
      await reader.subscribe({ topic: `${prefix}deadletter`, fromBeginning: true });
      const letters: Array<{ reason: string; value: string }> = [];
      await reader.run({
        eachMessage: async ({ message }) =>
          void letters.push({
            reason: String(message.headers?.['drover.reason']),
            value: String(message.value),
          }),
      });
      await until(() => letters.some((l) => /poison at 202/.test(l.reason)));
      await reader.disconnect();
      const letter = letters.find((l) => /poison at 202/.test(l.reason))!;
      expect(letter.reason).toMatch(
        /consumer group ".*g3" at .*logs\/\d@\d+: failed 2 times: poison at 202/,
      );
      expect(JSON.parse(letter.value)).toMatchObject({ seq: 202 });
    });

    it('refuses an oversized event with its reason and sends it to the dead-letter topic', async () => {
      const big = { ...log(1), message: 'x'.repeat(10_000) };
      const result = await bus.publish([log(0, 'dl'), big]);
      expect(result.accepted).toEqual([0]);
      expect(result.rejected).toEqual([
        {
          index: 1,
          reason: expect.stringMatching(/^event of \d+ bytes exceeds the limit of 4096$/),
        },
      ]);
      // The dead-letter topic holds it, keyed like the event, with the reason in a header.
      const kafka = new Kafka({ brokers: [brokers!], logLevel: logLevel.NOTHING });
      const reader = kafka.consumer({ groupId: `${prefix}dl-check` });
      await reader.connect();
      await reader.subscribe({ topic: `${prefix}deadletter`, fromBeginning: true });
      const letters: string[] = [];
      await reader.run({
        eachMessage: async ({ message }) =>
          void letters.push(String(message.headers?.['drover.reason'])),
      });
      // The topic is shared with the poison test above: find this event's letter.
      await until(() => letters.some((l) => /exceeds the limit/.test(l)));
      await reader.disconnect();
      expect(letters.find((l) => /exceeds the limit/.test(l))).toMatch(/exceeds the limit of 4096/);
    });

    it('loses no acknowledged event when the publisher is killed with SIGKILL', async () => {
      const killPrefix = `k${randomUUID().slice(0, 8)}.`;
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          join(import.meta.dirname, 'fixtures', 'publish-forever.ts'),
          `kafka://${brokers}/${killPrefix}`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      await until(() => out.split('\n').filter(Boolean).length > 1_000, 60_000);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const acknowledged = out
        .slice(0, out.lastIndexOf('\n'))
        .split('\n')
        .filter(Boolean)
        .map(Number);

      const reader = await createKafkaBus({ brokers: [brokers!], topicPrefix: killPrefix });
      const stored = new Set<number>();
      const consumer = await reader.consume({
        group: `${killPrefix}check`,
        topics: ['logs'],
        handler: async (b) => b.messages.forEach((m) => stored.add(m.event.seq as number)),
      });
      await until(() => acknowledged.every((id) => stored.has(id)), 60_000).catch(() => {});
      await consumer.stop();
      await reader.close();
      expect(acknowledged.length).toBeGreaterThan(1_000);
      expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
    });
  },
);
