import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../../ingest/bus/crc32c.ts';
import {
  CorruptRecordBatchError,
  corruptionOf,
  DECOMPRESSED_BUDGET,
  decodeRecordSet,
  skipTarget,
} from '../../../ingest/bus/kafka-fetch.ts';
import { kafkajs } from '../../../ingest/bus/kafkajs.ts';
import { lz4Compress } from '../../../ingest/bus/lz4.ts';

const requireLib = createRequire(import.meta.url);

interface KafkaJsDecoder {
  offset: number;
}
type DecodeMessages = ((d: KafkaJsDecoder) => Promise<unknown[]>) & {
  original?: DecodeMessages;
};

function decoders(): {
  fast: DecodeMessages;
  kafkajs: DecodeMessages;
  Decoder: new (b: Buffer) => KafkaJsDecoder;
} {
  kafkajs();
  const fast = requireLib(
    'kafkajs/src/protocol/requests/fetch/v4/decodeMessages.js',
  ) as DecodeMessages;
  expect(fast.original).toBeTypeOf('function');
  const Decoder = requireLib('kafkajs/src/protocol/decoder.js') as new (
    b: Buffer,
  ) => KafkaJsDecoder;
  return { fast, kafkajs: fast.original!, Decoder };
}

// A record batch written field by field, so that tests can set what Drover's producer never
// writes (control batches, log-append time, offsets past 2^53, odd varints).

function varLong(v: bigint): number[] {
  let z = v >= 0n ? v << 1n : (-v << 1n) - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return out;
}
const varInt = (n: number) => varLong(BigInt(n));
function bytesOf(v: string | Buffer | null): number[] {
  if (v === null) return varInt(-1);
  const b = typeof v === 'string' ? Buffer.from(v) : v;
  return [...varInt(b.length), ...b];
}

interface TestRecord {
  attributes?: number;
  timestampDelta?: bigint;
  offsetDelta: number;
  key: string | Buffer | null;
  value: string | Buffer | null;
  headers?: Array<[string | null, string | Buffer | null]>;
  /** Raw header count, instead of headers.length. */
  headerCount?: number;
  /** Bytes after the headers (kafkajs ignores them). */
  trailing?: number[];
}

function record(r: TestRecord): number[] {
  const body = [
    r.attributes ?? 0,
    ...varLong(r.timestampDelta ?? 0n),
    ...varInt(r.offsetDelta),
    ...bytesOf(r.key),
    ...bytesOf(r.value),
    ...varInt(r.headerCount ?? r.headers?.length ?? 0),
    ...(r.headers ?? []).flatMap(([k, v]) => [...bytesOf(k), ...bytesOf(v)]),
    ...(r.trailing ?? []),
  ];
  return [...varInt(body.length), ...body];
}

interface TestBatch {
  firstOffset: bigint;
  attributes?: number;
  firstTimestamp?: bigint;
  maxTimestamp?: bigint;
  producerId?: bigint;
  magic?: number;
  records: TestRecord[];
  /** Raw records bytes and count, instead of records. */
  raw?: { count: number; bytes: Buffer };
  /** The CRC-32C to write, instead of the batch's own. */
  crc?: number;
}

function batch(b: TestBatch): Buffer {
  const codec = (b.attributes ?? 0) & 7;
  const plain = b.raw?.bytes ?? Buffer.from(b.records.flatMap(record));
  const records = b.raw || codec === 0 ? plain : codec === 1 ? gzipSync(plain) : lz4Compress(plain);
  const out = Buffer.alloc(61 + records.length);
  out.writeBigInt64BE(b.firstOffset, 0);
  out.writeInt32BE(out.length - 12, 8);
  out.writeInt32BE(7, 12); // leader epoch
  out.writeInt8(b.magic ?? 2, 16);
  out.writeInt16BE(b.attributes ?? 0, 21);
  out.writeInt32BE(Math.max(0, b.records.length - 1), 23);
  out.writeBigInt64BE(b.firstTimestamp ?? 1_764_000_000_000n, 27);
  out.writeBigInt64BE(b.maxTimestamp ?? 1_764_000_000_500n, 35);
  out.writeBigInt64BE(b.producerId ?? 4242n, 43);
  out.writeInt16BE(3, 51);
  out.writeInt32BE(17, 53);
  out.writeInt32BE(b.raw?.count ?? b.records.length, 57);
  records.copy(out, 61);
  // CRC-32C over attributes .. end, as Kafka writes it.
  out.writeUInt32BE(b.crc ?? crc32c(out, 21, out.length), 17);
  return out;
}

/** A record set as a Fetch response holds it: its size, then its bytes. */
function framed(...parts: Buffer[]): Buffer {
  const set = Buffer.concat(parts);
  const out = Buffer.alloc(4 + set.length);
  out.writeInt32BE(set.length, 0);
  set.copy(out, 4);
  return out;
}

/** Record batches as a real broker wrote them (see the test that reads them). */
const BROKER_BATCHES =
  '0000000000000000000000dc00000000021df47750000100000002000001a240993b17000001a240993b17ffffffffffffffff000000000000000000031f8b08000000000000ffdbc0c8c0c020909c919a9c9d5f5a3289b15ac9a1243337b5b82431b740c9cad0dcccc4000674948a538bca32935395acaa95f2127381b4124ca352ad8e12505771623a48343f5ba996e105d064268ee4c4a2924d384d35c4612a5013aa89c539f9e54a3a4a19a98929a945c54081c32b1fcd99ac54cb249552945f965aa457949a589c9fc754a1c0c0c0c2285290939899a750925a51c2000059624735e10000000000000000000003000000590000000002ccdd1329000100000000000001a240993b20000001a240993b20ffffffffffffffff000000000000000000011f8b08000000000000ff53636060604a94284e4dcecf4b51484a2c49ce600000adf5aa0b14000000';

const records: TestRecord[] = [
  { offsetDelta: 0, key: 'checkout', value: '{"message":"ok","n":1}' },
  { offsetDelta: 1, timestampDelta: 15n, key: 'ünïcode', value: `{"m":"${'é'.repeat(300)}✓"}` },
  { offsetDelta: 2, timestampDelta: -3n, key: '', value: 'x'.repeat(20_000) },
  { offsetDelta: 3, key: null, value: Buffer.from([0, 1, 2, 255]) },
  { offsetDelta: 4, key: 'k', value: null, headers: [['drover.reason', 'too large']] },
  {
    offsetDelta: 5,
    key: 'h',
    value: '',
    headers: [
      ['a', '1'],
      ['a', '2'],
      ['a', null],
      [null, 'null key'],
      ['b', Buffer.from('bytes')],
      ['constructor', 'inherited name'],
      ['__proto__', 'not a prototype'],
      ['__proto__', 'twice'],
      ['7', 'numeric'],
    ],
  },
  { offsetDelta: 6, attributes: 5, key: 'x', value: 'y', trailing: [1, 2, 3] },
  // A timestamp delta that needs more than 7 bytes, and the most negative one.
  { offsetDelta: 7, timestampDelta: 1n << 60n, key: 'big', value: '1' },
  { offsetDelta: 8, timestampDelta: -(1n << 63n), key: 'min', value: '2' },
];

async function both(buf: Buffer): Promise<{ ours: unknown[]; theirs: unknown[] }> {
  const { fast, kafkajs: original, Decoder } = decoders();
  const a = new Decoder(buf);
  const b = new Decoder(buf);
  const ours = await fast(a);
  const theirs = await original(b);
  expect(a.offset).toBe(b.offset);
  return { ours, theirs };
}

/** Equal values, and the same keys in the same order (kafkajs's objects, field for field). */
function expectSame(ours: unknown[], theirs: unknown[]): void {
  expect(ours.length).toBe(theirs.length);
  // Node's strict deep equality: vitest's does not see an own `__proto__` property.
  expect(isDeepStrictEqual(ours, theirs)).toBe(true);
  const shape = (ms: unknown[]) =>
    ms.map((m) => {
      const r = m as { headers: object; batchContext: object };
      return [Object.keys(r), Object.keys(r.headers), Object.keys(r.batchContext)];
    });
  expect(shape(ours)).toStrictEqual(shape(theirs));
  for (let i = 0; i < ours.length; i++) {
    const h = (ours[i] as { headers: object }).headers;
    expect(Object.getPrototypeOf(h)).toBe(
      Object.getPrototypeOf((theirs[i] as { headers: object }).headers),
    );
  }
}

describe("the Fetch response's records (kafka-fetch.ts)", () => {
  it("decodes uncompressed and gzip batches into kafkajs's very messages", async () => {
    const set = framed(
      batch({ firstOffset: 100n, records }),
      batch({ firstOffset: 109n, attributes: 1, records }),
      // transactional, then a control batch (a commit marker), log-append time
      batch({ firstOffset: 118n, attributes: 0x10 | 1, producerId: 77n, records }),
      batch({
        firstOffset: 127n,
        attributes: 0x20 | 0x10,
        producerId: 77n,
        records: [{ offsetDelta: 0, key: Buffer.from([0, 0, 0, 1]), value: 'marker' }],
      }),
      batch({ firstOffset: 128n, attributes: 0x08 | 1, records }),
    );
    const { ours, theirs } = await both(set);
    expect(ours.length).toBe(4 * records.length + 1);
    expectSame(ours, theirs);
  });

  it("decodes lz4 batches (Kafka's LZ4 frame) into kafkajs's very messages", async () => {
    const set = framed(
      batch({ firstOffset: 0n, attributes: 3, records }),
      batch({ firstOffset: 9n, attributes: 0x10 | 3, producerId: 77n, records }),
      batch({ firstOffset: 18n, records }),
      batch({ firstOffset: 27n, attributes: 0x08 | 3, records }),
    );
    // kafkajs decodes lz4 with lz4.ts too (kafkajs.ts registers it): the same messages.
    const { ours, theirs } = await both(set);
    expect(ours.length).toBe(4 * records.length);
    expectSame(ours, theirs);
    expect((ours[2] as { value: Buffer }).value.toString()).toBe('x'.repeat(20_000));
  });

  it('computes offsets and timestamps past 2^53 as kafkajs does', async () => {
    const set = framed(
      batch({
        firstOffset: (1n << 62n) + 3n,
        firstTimestamp: (1n << 53n) - 2n,
        attributes: 1,
        records,
      }),
      batch({ firstOffset: (1n << 53n) - 4n, firstTimestamp: -1n, records }),
    );
    const { ours, theirs } = await both(set);
    expectSame(ours, theirs);
    expect((ours[0] as { offset: string }).offset).toBe(String((1n << 62n) + 3n));
  });

  it("is what kafkajs's Fetch v11 response decodes its records with", async () => {
    const { kafkajs: original, Decoder } = decoders();
    const v11 = requireLib('kafkajs/src/protocol/requests/fetch/v11/response.js') as {
      decode(
        b: Buffer,
      ): Promise<{ responses: Array<{ partitions: Array<{ messages: unknown[] }> }> }>;
    };
    const response = (set: Buffer) => {
      const head = Buffer.alloc(4 + 2 + 4 + 4 + 2 + 7 + 4 + 4 + 2 + 8 + 8 + 8 + 4 + 4);
      let at = 4 + 2 + 4;
      at = head.writeInt32BE(1, at); // one topic
      at = head.writeInt16BE(7, at);
      at += head.write('d.logs!', at);
      at = head.writeInt32BE(1, at); // one partition
      at = head.writeInt32BE(0, at);
      at = head.writeInt16BE(0, at);
      at = head.writeBigInt64BE(1_000n, at); // high watermark
      at = head.writeBigInt64BE(1_000n, at);
      at = head.writeBigInt64BE(0n, at);
      at = head.writeInt32BE(-1, at); // no aborted transactions
      head.writeInt32BE(-1, at); // preferred read replica
      return Buffer.concat([head, set]);
    };
    const set = framed(batch({ firstOffset: 3n, attributes: 1, records }));
    const decoded = await v11.decode(response(set));
    expectSame(decoded.responses[0]!.partitions[0]!.messages, await original(new Decoder(set)));
    // A record claiming 2^31-1 headers: refused at once (kafkajs would iterate them).
    const hostile = framed(
      batch({
        firstOffset: 9n,
        records: [{ offsetDelta: 0, key: 'k', value: 'v', headerCount: 2 ** 31 - 1 }],
      }),
    );
    // Not thrown (that failed every partition of the response): the partition's records
    // end there, marked with the error for the consumer.
    const partition = (await v11.decode(response(hostile))).responses[0]!.partitions[0]!;
    expect(partition.messages).toEqual([]);
    expect(corruptionOf(partition.messages)).toBeInstanceOf(CorruptRecordBatchError);
  });

  it('stops at a batch cut short by the fetch, as kafkajs does', async () => {
    const whole = batch({ firstOffset: 0n, attributes: 1, records });
    const next = batch({ firstOffset: 9n, records });
    const set = framed(whole, next.subarray(0, next.length - 10));
    const { ours, theirs } = await both(set);
    expect(ours.length).toBe(records.length);
    expectSame(ours, theirs);
  });

  it('leaves empty record sets, message sets and other codecs to kafkajs', async () => {
    const empty = Buffer.alloc(4);
    expectSame(...(Object.values(await both(empty)) as [unknown[], unknown[]]));
    // A magic-1 message set: offset, size, crc, magic 1, attributes, timestamp, key, value.
    const m = Buffer.alloc(8 + 4 + 4 + 1 + 1 + 8 + 4 + 4 + 3);
    m.writeBigInt64BE(5n, 0);
    m.writeInt32BE(m.length - 12, 8);
    m.writeInt8(1, 16);
    m.writeBigInt64BE(1_764_000_000_000n, 18);
    m.writeInt32BE(-1, 26);
    m.writeInt32BE(3, 30);
    m.write('abc', 34);
    const old = await both(framed(m));
    expect(old.ours.length).toBe(1);
    expect(isDeepStrictEqual(old.ours, old.theirs)).toBe(true);
    // Snappy: kafkajs refuses it, for this batch as before.
    const { fast, Decoder } = decoders();
    const snappy = framed(
      batch({ firstOffset: 0n, records }),
      batch({ firstOffset: 9n, attributes: 2, records }),
    );
    await expect(fast(new Decoder(snappy))).rejects.toThrow(/Snappy/);
  });

  it('refuses corrupt lengths and counts with an error naming the batch', async () => {
    const { fast, Decoder } = decoders();
    const bad: TestBatch[] = [
      // 2^31-1 headers in a record of a few bytes
      {
        firstOffset: 40n,
        records: [{ offsetDelta: 0, key: 'k', value: 'v', headerCount: 2 ** 31 - 1 }],
      },
      // a negative header key length
      {
        firstOffset: 41n,
        records: [
          { offsetDelta: 0, key: 'k', value: 'v', headerCount: 1, trailing: [...varInt(-5), 0] },
        ],
      },
      // a value longer than its record
      {
        firstOffset: 42n,
        records: [],
        raw: { count: 1, bytes: Buffer.from([...varInt(4), 0, 0, 0, ...varInt(100), 0, 0, 0]) },
      },
      // more records than bytes could hold
      {
        firstOffset: 43n,
        records: [],
        raw: { count: 1_000_000, bytes: Buffer.from(record(records[0]!)) },
      },
      // a six-byte varint
      {
        firstOffset: 44n,
        records: [],
        raw: { count: 1, bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0]) },
      },
      // gzip records that are not gzip
      {
        firstOffset: 45n,
        attributes: 1,
        records: [],
        raw: { count: 1, bytes: Buffer.from('not gzip at all') },
      },
      // lz4 records that are not lz4, and an lz4 frame cut short
      {
        firstOffset: 47n,
        attributes: 3,
        records: [],
        raw: { count: 1, bytes: Buffer.from('not lz4 at all') },
      },
      {
        firstOffset: 48n,
        attributes: 3,
        records: [],
        raw: { count: 1, bytes: lz4Compress(Buffer.from(record(records[2]!))).subarray(0, 60) },
      },
    ];
    for (const b of bad) {
      const err = corruptionOf(await fast(new Decoder(framed(batch(b)))));
      expect(err).toBeInstanceOf(CorruptRecordBatchError);
      expect(err!.message).toContain(`first offset ${b.firstOffset}`);
    }
    // A batch length shorter than a batch's header.
    const short = batch({ firstOffset: 46n, records });
    short.writeInt32BE(20, 8);
    expect(corruptionOf(await fast(new Decoder(framed(short))))).toBeInstanceOf(
      CorruptRecordBatchError,
    );
  });

  it('keeps repeated headers linear, each value once', async () => {
    const n = 50_000;
    const headers = Array.from({ length: n }, (_, i) => ['same', String(i)] as [string, string]);
    const set = framed(
      batch({ firstOffset: 0n, records: [{ offsetDelta: 0, key: 'k', value: 'v', headers }] }),
    );
    const { fast, Decoder } = decoders();
    const [m] = (await fast(new Decoder(set))) as Array<{ headers: { same: Buffer[] } }>;
    expect(m!.headers.same).toHaveLength(n);
    expect(m!.headers.same[n - 1]!.toString()).toBe(String(n - 1));
  });

  it('bounds what gzip batches decompress to: a bomb is refused, the rest waits for the next fetch', async () => {
    const bomb = { count: 1, bytes: gzipSync(Buffer.alloc(DECOMPRESSED_BUDGET + 1)) };
    const first = batch({ firstOffset: 0n, attributes: 1, records: [], raw: bomb });
    const { fast, Decoder } = decoders();
    expect(corruptionOf(await fast(new Decoder(framed(first))))?.message).toMatch(
      /larger than 67108864 bytes/,
    );
    // After a batch that fits, one past what is left ends the record set there.
    const fits = batch({ firstOffset: 0n, attributes: 1, records });
    const big = batch({
      firstOffset: 9n,
      attributes: 1,
      records: [],
      raw: { count: 1, bytes: gzipSync(Buffer.alloc(64 << 10)) },
    });
    const fallback = () => Promise.reject(new Error('no fallback expected'));
    const set = Buffer.concat([fits, big, fits]);
    const got = await decodeRecordSet(set, 0, set.length, fallback, 40_000);
    expect(got).toHaveLength(records.length);
  });

  it('bounds what lz4 batches decompress to, as gzip ones', async () => {
    const bomb = { count: 1, bytes: lz4Compress(Buffer.alloc(DECOMPRESSED_BUDGET + 1)) };
    expect(bomb.bytes.length).toBeLessThan(1 << 20);
    const first = batch({ firstOffset: 0n, attributes: 3, records: [], raw: bomb });
    const { fast, Decoder } = decoders();
    expect(corruptionOf(await fast(new Decoder(framed(first))))?.message).toMatch(
      /lz4 records larger than/,
    );
    const fits = batch({ firstOffset: 0n, attributes: 3, records });
    const big = batch({
      firstOffset: 9n,
      attributes: 3,
      records: [],
      raw: { count: 1, bytes: lz4Compress(Buffer.alloc(64 << 10)) },
    });
    const fallback = () => Promise.reject(new Error('no fallback expected'));
    const set = Buffer.concat([fits, big, fits]);
    const got = await decodeRecordSet(set, 0, set.length, fallback, 40_000);
    expect(got).toHaveLength(records.length);
  });
  it("checks each batch's CRC-32C before decoding it: a flipped byte is refused", async () => {
    const { fast, Decoder } = decoders();
    const fallback = () => Promise.reject(new Error('no fallback expected'));
    for (const attributes of [0, 1, 3]) {
      const good = batch({ firstOffset: 500n, attributes, records });
      // Every byte the CRC covers: attributes, offsets, timestamps, producer, records.
      for (const at of [21, 23, 27, 43, 57, 61, 70, good.length - 1]) {
        const bad = Buffer.from(good);
        bad[at]! ^= 0x04;
        const err = await decodeRecordSet(bad, 0, bad.length, fallback).catch((e: unknown) => e);
        expect(err, `codec ${attributes}, byte ${at}`).toBeInstanceOf(CorruptRecordBatchError);
        expect((err as Error).message).toMatch(/CRC-32C 0x[0-9a-f]{8} of its bytes does not match/);
        const e = err as CorruptRecordBatchError;
        expect(e.firstOffset).toBe('500');
        // The header's last offset, unless the flip is in the lastOffsetDelta itself.
        if (at !== 23) expect(e.lastOffset).toBe(String(500 + records.length - 1));
      }
      // A flipped CRC itself.
      const crc = Buffer.from(good);
      crc[18]! ^= 0x80;
      expect(
        await decodeRecordSet(crc, 0, crc.length, fallback).catch((e: unknown) => e),
      ).toBeInstanceOf(CorruptRecordBatchError);
    }
    // In a record set: the records before the corrupt batch are given, marked with it.
    const first = batch({ firstOffset: 0n, records });
    const second = batch({ firstOffset: 9n, attributes: 1, records });
    second[second.length - 3]! ^= 0xff;
    const got = await fast(new Decoder(framed(first, second)));
    expect(got).toHaveLength(records.length);
    expect(corruptionOf(got)?.message).toMatch(
      /^corrupt Kafka record batch \(first offset 9, last offset 17\): CRC-32C/,
    );
    // A batch refused half-way (its CRC matches, its third record does not decode): none
    // of its records is given, only those of the whole batches before it.
    const halfBad = batch({
      firstOffset: 9n,
      records: [
        records[0]!,
        { ...records[1]!, offsetDelta: 1 },
        { offsetDelta: 2, key: 'k', value: 'v', headerCount: 2 ** 31 - 1 },
      ],
    });
    const cut = await fast(new Decoder(framed(first, halfBad)));
    expect(cut).toHaveLength(records.length);
    expect(corruptionOf(cut)?.message).toMatch(/first offset 9, last offset 11\): .*headers/);
    // Nothing before it: no records, the mark.
    const alone = await fast(new Decoder(framed(second, first)));
    expect(alone).toEqual([]);
    expect(corruptionOf(alone)?.firstOffset).toBe('9');
    // Not a batch of magic 2 (whose CRC is another), and a valid record set: no mark.
    expect(corruptionOf(await fast(new Decoder(framed(first))))).toBeUndefined();
  });

  it('skips a corrupt batch only as far as the fetch confirms its end (bus.corruptBatch: skip)', async () => {
    const fallback = () => Promise.reject(new Error('no fallback expected'));
    const refused = async (set: Buffer) =>
      (await decodeRecordSet(set, 0, set.length, fallback).catch(
        (e: unknown) => e,
      )) as CorruptRecordBatchError;
    // 9 records at 100..108, then a batch at 109. The bad batch's lastOffsetDelta is
    // damaged (past the CRC): 5000, 2 (inside the batch), -7; or a record's byte is (8).
    const next = batch({ firstOffset: 109n, records });
    for (const delta of [5000, 2, -7, 8]) {
      const bad = batch({ firstOffset: 100n, records });
      if (delta === 8) bad[bad.length - 1]! ^= 0x01;
      else bad.writeInt32BE(delta, 23);
      const followed = await refused(Buffer.concat([bad, next]));
      expect(followed).toBeInstanceOf(CorruptRecordBatchError);
      expect(followed.nextBase).toBe('109');
      // Where the next batch starts, as the fetch saw it; never the high watermark.
      expect(skipTarget(followed, 100n, 2000n)).toBe(109n);
      expect(skipTarget(followed, 104n, 2000n)).toBe(109n);
      // Alone in its fetch: believed only if it ends exactly at the high watermark.
      const alone = await refused(bad);
      expect(alone.nextBase).toBeUndefined();
      expect(alone.last).toBe(true);
      expect(skipTarget(alone, 100n, 2000n)).toBe(101n);
      expect(skipTarget(alone, 104n, 109n)).toBe(delta === 8 ? 109n : 105n);
      // The next batch cut by the fetch's size limit (or damaged too): one offset.
      const cut = await refused(Buffer.concat([bad, next.subarray(0, next.length - 1)]));
      expect(cut.nextBase).toBeUndefined();
      expect(cut.last).toBe(false);
      expect(skipTarget(cut, 100n, 2000n)).toBe(101n);
    }
    // A damaged length: what follows where it says the batch ends is no checked batch.
    const badLength = Buffer.concat([batch({ firstOffset: 100n, records }), next]);
    badLength.writeInt32BE(badLength.readInt32BE(8) - 20, 8);
    const shifted = await refused(badLength);
    expect(shifted.nextBase).toBeUndefined();
    expect(skipTarget(shifted, 100n, 2000n)).toBe(101n);
    // Its CRC matched, its records do not decode: the header is as written, up to the end.
    const halfBad = batch({
      firstOffset: 100n,
      records: [records[0]!, { offsetDelta: 1, key: 'k', value: 'v', headerCount: 2 ** 31 - 1 }],
    });
    const undecodable = await refused(halfBad);
    expect(undecodable.checked).toBe(true);
    expect(skipTarget(undecodable, 100n, 2000n)).toBe(102n);
    expect(skipTarget(undecodable, 100n, 101n)).toBe(101n);
  });

  it('accepts the batches a real broker wrote, with the CRC-32C it computed', async () => {
    // Two gzip batches as Kafka 4.4.0 stored them on disk (a topic with
    // compression.type=gzip written uncompressed: the broker compressed them and computed
    // their CRC-32C), 3 records and 1.
    const stored = Buffer.from(BROKER_BATCHES, 'hex');
    const { ours, theirs } = await both(framed(stored));
    expect(ours).toHaveLength(4);
    expectSame(ours, theirs);
    const values = ours.map((m) => (m as { value: Buffer | null }).value?.toString());
    expect(values[2]).toBe('plain text');
    expect(values[3]).toBe('second batch');
    // The same bytes with one flipped in the second batch: the first batch's records, and
    // the second refused by its CRC.
    const { fast, Decoder } = decoders();
    const flipped = Buffer.from(stored);
    flipped[flipped.length - 5]! ^= 0x01;
    const got = await fast(new Decoder(framed(flipped)));
    expect(got).toHaveLength(3);
    expect(corruptionOf(got)?.message).toMatch(/first offset 3, last offset 3\): CRC-32C/);
  });

  it("hands kafkajs's consumer a partition cut by a corrupt batch, named, with nothing resolved past it", async () => {
    kafkajs();
    const Batch = requireLib('kafkajs/src/consumer/batch.js') as new (
      topic: string,
      fetchedOffset: string,
      data: { partition: number; highWatermark: string; messages: unknown[] },
    ) => {
      isEmpty(): boolean;
      isEmptyDueToFiltering(): boolean;
      lastOffset(): string;
      messages: unknown[];
    };
    const { fast, Decoder } = decoders();
    const bad = batch({ firstOffset: 9n, records });
    bad[bad.length - 1]! ^= 0x01;
    const messages = await fast(new Decoder(framed(bad)));
    const b = new Batch('drover.logs', '12', { partition: 4, highWatermark: '40', messages });
    // Delivered (kafkajs skips an empty batch and fetches the same offset again at once).
    expect(b.isEmpty()).toBe(false);
    expect(b.isEmptyDueToFiltering()).toBe(false);
    expect(b.messages).toEqual([]);
    // An auto-resolving handler resolves nothing new.
    expect(b.lastOffset()).toBe('11');
    expect(corruptionOf(messages)?.message).toMatch(
      /^corrupt Kafka record batch in drover\.logs\/4 \(first offset 9, last offset 17\)/,
    );
    // A valid one is kafkajs's Batch as before.
    const good = new Batch('drover.logs', '9', {
      partition: 4,
      highWatermark: '40',
      messages: await fast(new Decoder(framed(batch({ firstOffset: 9n, records })))),
    });
    expect(good.isEmpty()).toBe(false);
    expect(good.lastOffset()).toBe('17');
    const empty = new Batch('drover.logs', '9', { partition: 4, highWatermark: '9', messages: [] });
    expect(empty.isEmpty()).toBe(true);
  });
});
