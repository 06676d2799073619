import { createRequire } from 'node:module';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { crc32c } from '../../../ingest/bus/crc32c.ts';
import {
  canEncode,
  GZIP_LEVEL,
  LZ4_SCRATCH_MAX,
  lz4Scratch,
  type ProduceArgs,
  ScratchBuffers,
} from '../../../ingest/bus/kafka-produce.ts';
import { kafkajs } from '../../../ingest/bus/kafkajs.ts';
import { lz4Decompress } from '../../../ingest/bus/lz4.ts';

const requireLib = createRequire(import.meta.url);
type Request = ((args: ProduceArgs) => { encode(): Promise<{ buffer: Buffer }> }) & {
  original?: Request;
};

function produceRequests(): { fast: Request; kafkajs: Request } {
  kafkajs();
  const fast = requireLib('kafkajs/src/protocol/requests/produce/v3/request.js') as Request;
  expect(fast.original).toBeTypeOf('function');
  return { fast, kafkajs: fast.original! };
}

function argsOf(
  compression: number,
  messages: ProduceArgs['topicData'][0]['partitions'][0]['messages'],
): ProduceArgs {
  const { Long } = {
    Long: requireLib('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown },
  };
  return {
    acks: -1,
    timeout: 30_000,
    producerId: Long.fromValue(4242),
    producerEpoch: 3,
    compression,
    topicData: [
      {
        topic: 'drover.logs',
        partitions: [
          { partition: 0, firstSequence: 17, messages },
          { partition: 2, firstSequence: 0, messages: messages.slice(0, 1) },
        ],
      },
      { topic: 'drover.deadletter', partitions: [{ partition: 1, firstSequence: 5, messages }] },
    ],
  };
}

const messages = [
  { key: 'checkout', value: '{"message":"ok","n":1}' },
  { key: 'ünïcode-sërvice', value: `{"message":"${'é'.repeat(300)}✓"}` },
  { key: '', value: 'x'.repeat(20_000), headers: { 'drover.reason': 'too large' } },
  { key: null, value: Buffer.from([0, 1, 2, 255]) },
  { key: Buffer.from('k'), value: null, headers: { a: ['1', '2'], b: Buffer.from('bytes') } },
  // ASCII keys are measured and written char by char up to 64 chars, by Node past that.
  { key: 'svc-\u007f', value: 'a key of ASCII up to its last char', headers: {} },
  { key: `svc-${'x'.repeat(60)}`, value: 'a key of 64 chars' },
  { key: `svc-${'x'.repeat(61)}`, value: 'a key of 65 chars' },
  { key: `svc-${'x'.repeat(60)}\u0080`, value: 'a 65-char key, its last char not ASCII' },
  { key: 'svc-\ud800', value: 'a lone surrogate, written as U+FFFD' },
];

describe("the Produce request's encoding (kafka-produce.ts)", () => {
  afterEach(() => vi.restoreAllMocks());

  it("writes the very bytes kafkajs's own encoder writes, without compression", async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_000_000_123);
    const { fast, kafkajs: original } = produceRequests();
    const args = argsOf(0, messages);
    const ours = (await fast(args).encode()).buffer;
    const theirs = (await original(args).encode()).buffer;
    expect(ours.length).toBe(theirs.length);
    expect(ours.equals(theirs)).toBe(true);
  });

  it('writes the same records under gzip, and a checksum kafkajs agrees with', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_000_000_123);
    const { fast, kafkajs: original } = produceRequests();
    const args = argsOf(1, messages);
    const ours = (await fast(args).encode()).buffer;
    const theirs = (await original(args).encode()).buffer;
    // gzip's bytes may differ in their header; the layout around them and what they hold may not.
    expect(ours.length).toBeGreaterThan(100);
    const first = (b: Buffer) => {
      // transactional id (-1), acks, timeout, topics, topic name, partitions, partition, size
      let at = 2 + 2 + 4 + 4;
      at += 2 + b.readInt16BE(at);
      at += 4 + 4;
      const size = b.readInt32BE(at);
      return b.subarray(at + 4, at + 4 + size);
    };
    const a = first(ours);
    const b = first(theirs);
    // First offset, then the length (of what follows it: the levels differ, so the sizes
    // do), leader epoch and magic.
    expect(a.subarray(0, 8)).toEqual(b.subarray(0, 8));
    expect(a.readInt32BE(8)).toBe(a.length - 12);
    expect(a.subarray(12, 17)).toEqual(b.subarray(12, 17));
    expect(a.subarray(21, 61)).toEqual(b.subarray(21, 61)); // attributes .. record count
    expect(a.readUInt32BE(17)).toBe(crc32c(a, 21));
    expect(gunzipSync(a.subarray(61))).toEqual(gunzipSync(b.subarray(61)));
    // At GZIP_LEVEL 1 (the embedded bus's): gzip's header says "fastest" in its XFL byte
    // (4; zlib's default level 6 writes 0), and the batch is no larger than 1.5x kafkajs's.
    expect(GZIP_LEVEL).toBe(1);
    expect(a[61 + 8]).toBe(4);
    expect(b[61 + 8]).toBe(0);
    expect(a.length).toBeLessThan(b.length * 1.5);
  });

  it("writes lz4 records in Kafka's LZ4 frame, as kafkajs does with the codec registered", async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_000_000_123);
    const { fast, kafkajs: original } = produceRequests();
    const args = argsOf(3, messages);
    expect(canEncode(args)).toBe(true);
    const ours = (await fast(args).encode()).buffer;
    const theirs = (await original(args).encode()).buffer;
    // One compressor (lz4.ts) on the same records: the very same bytes.
    expect(ours.equals(theirs)).toBe(true);
    let at = 2 + 2 + 4 + 4;
    at += 2 + ours.readInt16BE(at) + 4 + 4;
    const batch = ours.subarray(at + 4, at + 4 + ours.readInt32BE(at));
    expect(batch.readInt16BE(21) & 7).toBe(3);
    expect(batch.readUInt32BE(17)).toBe(crc32c(batch, 21));
    expect(batch.readUInt32LE(61)).toBe(0x184d2204);
    const plain = lz4Decompress(batch.subarray(61), 1 << 20);
    expect(plain.toString('latin1')).toContain('x'.repeat(20_000));
  });

  it("reuses lz4's buffers from batch to batch without a byte of one batch in the next", async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_000_000_123);
    const { fast, kafkajs: original } = produceRequests();
    // A large batch of bytes that compress poorly, then small ones, then the large again:
    // each as kafkajs writes it alone (its own buffers every time).
    let x = 7;
    const noise = Buffer.alloc(300_000, 0).map(() => (x = (x * 1103515245 + 12345) & 0xff));
    const large = [...messages, { key: 'big', value: noise }];
    for (const batch of [large, messages.slice(0, 2), messages.slice(0, 1), large, messages]) {
      const args = argsOf(3, batch);
      const ours = (await fast(args).encode()).buffer;
      expect(ours.equals((await original(args).encode()).buffer)).toBe(true);
    }
    expect(lz4Scratch.keptBytes).toBeGreaterThan(0);
    expect(lz4Scratch.keptBytes).toBeLessThanOrEqual(2 * LZ4_SCRATCH_MAX);
  });

  it('keeps each lz4 buffer only up to its bound; a larger batch gets its own', () => {
    const scratch = new ScratchBuffers(1 << 20);
    const small = scratch.records(1000);
    expect(small.length).toBe(1000);
    expect(scratch.keptBytes).toBe(65536);
    // The same memory again for the next batch of that size: reused, not allocated.
    expect(scratch.records(2000).buffer).toBe(small.buffer);
    const huge = scratch.records((1 << 20) + 1);
    expect(huge.length).toBe((1 << 20) + 1);
    expect(huge.buffer).not.toBe(small.buffer);
    expect(scratch.keptBytes).toBe(65536);
    expect(scratch.frame((1 << 20) + 5).length).toBe((1 << 20) + 5);
    expect(scratch.keptBytes).toBe(65536);
    // Up to the bound it grows, and stays at it.
    expect(scratch.records(1 << 20).length).toBe(1 << 20);
    expect(scratch.frame(1 << 20).length).toBe(1 << 20);
    expect(scratch.keptBytes).toBe(2 << 20);
  });

  it('leaves to kafkajs what it does not write: timestamps, other codecs, other values', () => {
    expect(canEncode(argsOf(0, messages))).toBe(true);
    expect(canEncode(argsOf(0, [{ key: 'a', value: 'b', timestamp: '1' }]))).toBe(false);
    expect(canEncode(argsOf(2, messages))).toBe(false);
    expect(canEncode(argsOf(0, [{ key: 'a', value: 42 }]))).toBe(false);
    expect(canEncode(argsOf(0, [{ key: 1, value: 'v' }]))).toBe(false);
    expect(canEncode(argsOf(0, [{ key: 'a', value: 'v', headers: { h: 7 } }]))).toBe(false);
  });
});

describe("every request's framing (framedRequest)", () => {
  afterEach(() => vi.restoreAllMocks());

  it("writes kafkajs's bytes in one buffer of the request's size", async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_000_000_123);
    kafkajs();
    type Framer = ((args: unknown) => Promise<{ buf: Buffer; offset: number; buffer: Buffer }>) & {
      original?: Framer;
    };
    const ours = requireLib('kafkajs/src/protocol/request.js') as Framer;
    expect(ours.original).toBeTypeOf('function');
    const theirs = ours.original!;
    const metadata = (
      requireLib('kafkajs/src/protocol/requests/metadata/v0/request.js') as (args: {
        topics: string[];
      }) => unknown
    )({ topics: ['drover.logs', 'ünï'] });
    const { fast } = produceRequests();
    for (const request of [metadata, fast(argsOf(0, messages)), fast(argsOf(3, messages))])
      for (const clientId of ['drover', 'ünïcode-client', null, '']) {
        const args = { correlationId: 123_456, clientId, request };
        const a = await ours(args);
        const b = await theirs(args);
        expect(a.buffer.equals(b.buffer)).toBe(true);
        // One buffer, exactly the request: kafkajs's is the next power of two.
        expect(a.buf.length).toBe(a.offset);
        expect(a.buf.readInt32BE(0)).toBe(a.offset - 4);
      }
  });
});

describe('CRC-32C', () => {
  it('gives the check value and agrees with kafkajs on every length and offset', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    const theirs = requireLib('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (
      b: Buffer,
    ) => number;
    const data = Buffer.alloc(600);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
    for (let start = 0; start < 9; start++)
      for (let end = start; end <= 600; end += 13)
        expect(crc32c(data, start, end)).toBe(theirs(data.subarray(start, end)));
  });

  it("writes a value given as a range of a shared buffer as that range's bytes", async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_764_000_000_123);
    const { fast, kafkajs: original } = produceRequests();
    const shared = Buffer.from('{"a":1}{"message":"ünïcode"}{"b":2}');
    const second = Buffer.byteLength('{"message":"ünïcode"}');
    const ranged = [
      { key: 'checkout', value: shared, valueStart: 0, valueEnd: 7 },
      { key: 'checkout', value: shared, valueStart: 7, valueEnd: 7 + second },
      { key: null, value: shared, valueStart: 7 + second, valueEnd: shared.length },
      { key: 'empty', value: shared, valueStart: 3, valueEnd: 3 },
    ];
    const views = ranged.map(({ key, value, valueStart, valueEnd }) => ({
      key,
      value: value.subarray(valueStart, valueEnd),
    }));
    for (const codec of [0, 3]) {
      const ours = (await fast(argsOf(codec, ranged)).encode()).buffer;
      const theirs = (await original(argsOf(codec, views)).encode()).buffer;
      expect(ours.equals(theirs)).toBe(true);
    }
  });

  it('refuses a value range outside its buffer rather than let kafkajs send the buffer', () => {
    const { fast } = produceRequests();
    const shared = Buffer.from('0123456789');
    for (const [valueStart, valueEnd] of [
      [4, 11],
      [-1, 3],
      [5, 4],
      [1.5, 3],
    ]) {
      const args = argsOf(0, [{ key: 'k', value: shared, valueStart, valueEnd }]);
      expect(canEncode(args)).toBe(false);
      expect(() => fast(args)).toThrow(/value range/);
    }
    const string = argsOf(0, [{ key: 'k', value: 'text', valueStart: 0, valueEnd: 2 }]);
    expect(canEncode(string)).toBe(false);
    expect(() => fast(string)).toThrow(/value range/);
  });
});
