import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { crc32c } from './crc32c.ts';
import { lz4Bound, lz4CompressInto } from './lz4.ts';

/**
 * The body of a Kafka Produce request (versions 3-7, which kafkajs all builds with its v3
 * encoder), written straight into one buffer per record batch: kafkajs makes an encoder
 * object per record and per header, grows and copies them into the batch, and checksums
 * with a byte-at-a-time CRC-32C; that was about half of the ingest server's CPU
 * (bench/README.md, "Ingest"). The bytes are the ones kafkajs writes (a test compares
 * them), so kafkajs stays the client: connections, the idempotent producer's sequence
 * numbers, retries and answers are its own.
 *
 * Only the messages Drover sends take this path: keys and values that are strings,
 * Buffers or null, headers of strings or Buffers, and no `timestamp` (the broker's
 * `CreateTime` is then the send's, as kafkajs sets it), compressed with none, gzip or
 * lz4 (Kafka's LZ4 frame, lz4.ts). Anything else is encoded by kafkajs as before.
 *
 * Bounds: a record batch's buffer is the size of its records (two passes over them: the
 * sizes, then the bytes), and the request's is the sum of its batches, which the
 * batcher caps at the topics' `max.message.bytes` (kafka.ts).
 */

const gzipAsync = promisify(gzip);

/**
 * gzip's level for record batches: 1, as the embedded bus stores its chunks
 * (embedded/log.ts). On the fleet stream's batches of 500 events (bench/README.md,
 * "Ingest"), level 1 costs about 0.9 us of CPU per event against 2.1 at zlib's default
 * 6, for 31 bytes per event against 23 (lz4: 50).
 */
export const GZIP_LEVEL = 1;

/** kafkajs's compression codes (protocol/message/compression). */
const CODEC_NONE = 0;
const CODEC_GZIP = 1;
const CODEC_LZ4 = 3;
const CODEC_MASK = 0x07;
const TRANSACTIONAL = 0x10;
const MAGIC = 2;

export interface ProduceMessage {
  key?: unknown;
  value?: unknown;
  /**
   * With a Buffer `value`: the message's value is `value[valueStart, valueEnd)`, a range
   * of a buffer many messages share (kafka.ts writes events so), read without a Buffer
   * view made per message. Only this encoder reads it: a request holding one that it
   * cannot encode is refused, never left to kafkajs (which would send all of `value`).
   */
  valueStart?: number;
  valueEnd?: number;
  headers?: unknown;
  timestamp?: unknown;
}

export interface ProducePartition {
  partition: number;
  firstSequence?: number;
  messages: ProduceMessage[];
}

export interface ProduceArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  /** kafkajs's Long (its `.value` is a bigint), or a number. */
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: Array<{ topic: string; partitions: ProducePartition[] }>;
}

function isBytes(v: unknown): v is string | Buffer {
  return typeof v === 'string' || Buffer.isBuffer(v);
}

function hasRange(m: ProduceMessage): boolean {
  return m.valueStart !== undefined || m.valueEnd !== undefined;
}

/** Whether a message's value range (ProduceMessage.valueStart) lies within its Buffer. */
function rangeOk(m: ProduceMessage): boolean {
  const { valueStart: from, valueEnd: to } = m;
  return (
    Buffer.isBuffer(m.value) &&
    Number.isInteger(from) &&
    Number.isInteger(to) &&
    from! >= 0 &&
    from! <= to! &&
    to! <= m.value.length
  );
}

/** The bytes of a message's value: its range, or all of it. */
function valueLength(m: ProduceMessage): number {
  if (m.value == null) return -1;
  if (m.valueEnd !== undefined) return m.valueEnd - m.valueStart!;
  return byteLength(m.value as string | Buffer);
}

/** Whether every message is one this encoder writes as kafkajs would. */
export function canEncode(args: ProduceArgs): boolean {
  const codec = (args.compression ?? CODEC_NONE) & CODEC_MASK;
  if (codec !== CODEC_NONE && codec !== CODEC_GZIP && codec !== CODEC_LZ4) return false;
  if (!Array.isArray(args.topicData)) return false;
  for (const t of args.topicData) {
    if (typeof t.topic !== 'string' || !Array.isArray(t.partitions)) return false;
    for (const p of t.partitions) {
      if (!Array.isArray(p.messages)) return false;
      for (const m of p.messages) {
        if (m.timestamp != null) return false;
        if (m.key != null && !isBytes(m.key)) return false;
        if (m.value !== null && !isBytes(m.value)) return false;
        if (hasRange(m) && !rangeOk(m)) return false;
        if (m.headers != null && !headersOk(m.headers)) return false;
      }
    }
  }
  return true;
}

function headersOk(headers: unknown): boolean {
  if (typeof headers !== 'object') return false;
  for (const v of Object.values(headers as Record<string, unknown>)) {
    if (Array.isArray(v)) {
      if (!v.every((x) => x === null || isBytes(x))) return false;
    } else if (v !== null && !isBytes(v)) return false;
  }
  return true;
}

function zigzag(n: number): number {
  return ((n << 1) ^ (n >> 31)) >>> 0;
}

function varIntSize(n: number): number {
  let v = zigzag(n);
  let bytes = 1;
  while (v >= 0x80) {
    v >>>= 7;
    bytes++;
  }
  return bytes;
}

function writeVarInt(buf: Buffer, at: number, n: number): number {
  let v = zigzag(n);
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}

function byteLength(v: string | Buffer): number {
  return typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

/** Writes `v` (length known) at `at`, returns the end. */
function writeBytes(buf: Buffer, at: number, v: string | Buffer, length: number): number {
  if (typeof v === 'string') buf.write(v, at, length, 'utf8');
  else buf.set(v, at);
  return at + length;
}

type HeaderList = ReadonlyArray<readonly [string, string | Buffer | null]>;

/** A message without headers (most): no array made for it. */
const NO_HEADERS: HeaderList = [];

/** The headers as kafkajs flattens them: an array value is one header per element. */
function headerList(headers: unknown): HeaderList {
  if (headers == null) return NO_HEADERS;
  const out: Array<[string, string | Buffer | null]> = [];
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
    if (Array.isArray(v)) for (const x of v) out.push([k, x as string | Buffer | null]);
    else out.push([k, v as string | Buffer | null]);
  }
  return out;
}

/**
 * A string key's UTF-8 length: its length when every char is ASCII (service names, the
 * keys Drover sends), counted here rather than by a call into Node per message.
 */
function keyLength(k: string | Buffer): number {
  if (typeof k !== 'string') return k.length;
  const n = k.length;
  if (n > ASCII_KEY_MAX) return Buffer.byteLength(k);
  for (let i = 0; i < n; i++) if (k.charCodeAt(i) >= 0x80) return Buffer.byteLength(k);
  return n;
}

/** Keys up to this many chars are measured and written char by char when ASCII. */
const ASCII_KEY_MAX = 64;

/** Writes a key of `length` bytes (keyLength) at `at`, returns the end. */
function writeKey(buf: Buffer, at: number, k: string | Buffer, length: number): number {
  if (typeof k === 'string' && length === k.length && length <= ASCII_KEY_MAX) {
    for (let i = 0; i < length; i++) buf[at++] = k.charCodeAt(i);
    return at;
  }
  return writeBytes(buf, at, k, length);
}

/**
 * The records of one batch, framed (`[Record]` without the count), offset deltas from 0
 * and timestamp deltas 0. Sizes go into `lengths` (3 per record) in the first pass;
 * `headroom` bytes are left free before the records (the batch's header, when the
 * records are sent as they are).
 */
function encodeRecords(
  messages: ProduceMessage[],
  headroom = 0,
  alloc: (size: number) => Buffer = (size) => Buffer.allocUnsafe(size),
): Buffer {
  const n = messages.length;
  const lengths = new Int32Array(n * 3);
  // Messages with headers only (Drover's events have none): their lists by index.
  let headers: Map<number, HeaderList> | undefined;
  let total = headroom;
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    const keyLen = m.key == null ? -1 : keyLength(m.key as string | Buffer);
    const valueLen = valueLength(m);
    let body =
      1 + // attributes
      1 + // timestamp delta 0
      varIntSize(i) +
      varIntSize(keyLen) +
      Math.max(0, keyLen) +
      varIntSize(valueLen) +
      Math.max(0, valueLen) +
      1; // the header count, when 0
    if (m.headers != null) {
      const hs = headerList(m.headers);
      (headers ??= new Map()).set(i, hs);
      body += varIntSize(hs.length) - 1;
      for (const [k, v] of hs) {
        const kl = Buffer.byteLength(k);
        const vl = v === null ? -1 : byteLength(v);
        body += varIntSize(kl) + kl + varIntSize(vl) + Math.max(0, vl);
      }
    }
    lengths[i * 3] = keyLen;
    lengths[i * 3 + 1] = valueLen;
    lengths[i * 3 + 2] = body;
    total += varIntSize(body) + body;
  }
  const buf = alloc(total);
  let at = headroom;
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    const keyLen = lengths[i * 3]!;
    const valueLen = lengths[i * 3 + 1]!;
    at = writeVarInt(buf, at, lengths[i * 3 + 2]!);
    buf[at++] = 0; // attributes
    buf[at++] = 0; // timestamp delta
    at = writeVarInt(buf, at, i);
    at = writeVarInt(buf, at, keyLen);
    if (keyLen >= 0) at = writeKey(buf, at, m.key as string | Buffer, keyLen);
    at = writeVarInt(buf, at, valueLen);
    if (m.valueEnd !== undefined) {
      buf.set((m.value as Buffer).subarray(m.valueStart, m.valueEnd), at);
      at += valueLen;
    } else if (valueLen >= 0) at = writeBytes(buf, at, m.value as string | Buffer, valueLen);
    const hs = headers?.get(i) ?? NO_HEADERS;
    at = writeVarInt(buf, at, hs.length);
    for (const [k, v] of hs) {
      const kl = Buffer.byteLength(k);
      at = writeVarInt(buf, at, kl);
      at = writeBytes(buf, at, k, kl);
      if (v === null) at = writeVarInt(buf, at, -1);
      else {
        const vl = byteLength(v);
        at = writeVarInt(buf, at, vl);
        at = writeBytes(buf, at, v, vl);
      }
    }
  }
  if (at !== total) throw new Error(`record batch encoding wrote ${at} of ${total} bytes`);
  return buf;
}

/**
 * The buffers an lz4 record batch's records and frame are written in before the batch is
 * copied out of them, reused from batch to batch: each batch allocated both anew (its
 * records' size twice), Buffers outside V8's heap that V8 counts towards starting a major
 * collection, in a streak of them, in the Kafka runs that read low (bench/README.md,
 * issue 15, "major collections"). Bound: each buffer is kept only up to `max` bytes; a
 * larger batch (a send is capped at the topics' `max.message.bytes`, kafka.ts) gets
 * buffers of its own that are not kept. So at most 2 × `max` bytes, whatever the events.
 * A batch reads only the bytes it wrote (lengths from this batch's own pass), never a
 * previous batch's.
 */
export class ScratchBuffers {
  private recordsBuf = Buffer.alloc(0);
  private frameBuf = Buffer.alloc(0);

  constructor(readonly max: number) {}

  /** A buffer of exactly `size` bytes for the records (a view of the kept one). */
  records(size: number): Buffer {
    if (size > this.max) return Buffer.allocUnsafe(size);
    if (this.recordsBuf.length < size) this.recordsBuf = Buffer.allocUnsafe(grow(size, this.max));
    return this.recordsBuf.subarray(0, size);
  }

  /** A buffer of at least `size` bytes for the frame. */
  frame(size: number): Buffer {
    if (size > this.max) return Buffer.allocUnsafe(size);
    if (this.frameBuf.length < size) this.frameBuf = Buffer.allocUnsafe(grow(size, this.max));
    return this.frameBuf;
  }

  /** Bytes kept (both buffers). */
  get keptBytes(): number {
    return this.recordsBuf.length + this.frameBuf.length;
  }
}

/** A kept buffer's next size: `size` rounded up to 64 KiB, at most `max`. */
function grow(size: number, max: number): number {
  return Math.min(max, Math.ceil(size / 65536) * 65536);
}

/**
 * 4 MiB each: above a send's record batch at the topics' default `max.message.bytes`
 * (1 MiB) and at the batcher's 5,000 events of the benchmark's (about 1.4 MiB).
 */
export const LZ4_SCRATCH_MAX = 4 << 20;
export const lz4Scratch = new ScratchBuffers(LZ4_SCRATCH_MAX);

function int64(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'string') return BigInt(v);
  if (v && typeof (v as { value?: unknown }).value === 'bigint')
    return (v as { value: bigint }).value;
  throw new TypeError('a 64-bit integer was expected');
}

/** One partition's entry: partition, the record batch's size, the record batch. */
async function encodePartition(
  args: ProduceArgs,
  p: ProducePartition,
  now: number,
): Promise<Buffer> {
  const codec = (args.compression ?? CODEC_NONE) & CODEC_MASK;
  // partition, size, firstOffset, length, leader epoch, magic, crc: 4+4+8+4+4+1+4.
  // attributes .. records count: 2+4+8+8+8+2+4+4 = 40.
  const headerBytes = 29;
  const crcFrom = headerBytes;
  let out: Buffer;
  if (codec === CODEC_NONE) {
    // Uncompressed records are written where they are sent, after the header.
    out = encodeRecords(p.messages, headerBytes + 40);
  } else if (codec === CODEC_LZ4) {
    // lz4 runs on this thread (lz4.ts, linear in the records), with no await between the
    // records written into the scratch and the frame copied out of it: the records and
    // the frame are written in lz4Scratch and only the batch is allocated, of its size.
    const scratch = lz4Scratch;
    const records = encodeRecords(p.messages, 0, (size) => scratch.records(size));
    const frame = scratch.frame(lz4Bound(records.length));
    const end = lz4CompressInto(records, frame, 0);
    out = Buffer.allocUnsafe(headerBytes + 40 + end);
    out.set(frame.subarray(0, end), headerBytes + 40);
  } else {
    // gzip runs in zlib's thread pool, after this function's await: its input is its own.
    const records = encodeRecords(p.messages);
    const payload = await gzipAsync(records, { level: GZIP_LEVEL });
    out = Buffer.allocUnsafe(headerBytes + 40 + payload.length);
    out.set(payload, headerBytes + 40);
  }
  const batchSize = out.length - 8; // after partition and size
  out.writeInt32BE(p.partition, 0);
  out.writeInt32BE(batchSize, 4);
  out.writeBigInt64BE(0n, 8); // first offset
  out.writeInt32BE(batchSize - 12, 16); // length: after first offset and itself
  out.writeInt32BE(0, 20); // partition leader epoch
  out.writeInt8(MAGIC, 24);
  const at = crcFrom;
  out.writeInt16BE(codec | (args.transactionalId ? TRANSACTIONAL : 0), at);
  out.writeInt32BE(p.messages.length - 1, at + 2); // last offset delta
  out.writeBigInt64BE(BigInt(now), at + 6); // first timestamp
  out.writeBigInt64BE(BigInt(now), at + 14); // max timestamp
  out.writeBigInt64BE(int64(args.producerId ?? -1), at + 22);
  out.writeInt16BE(args.producerEpoch ?? 0, at + 30);
  out.writeInt32BE(p.firstSequence ?? 0, at + 32);
  out.writeInt32BE(p.messages.length, at + 36);
  out.writeUInt32BE(crc32c(out, crcFrom, out.length), 25);
  return out;
}

function writeString(s: string | null | undefined): Buffer {
  if (s == null) {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(-1, 0);
    return b;
  }
  const len = Buffer.byteLength(s);
  const b = Buffer.allocUnsafe(2 + len);
  b.writeInt16BE(len, 0);
  b.write(s, 2, len, 'utf8');
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** The Produce request body (v3 layout), as kafkajs's v3 `encode()` writes it. */
export async function encodeProduce(args: ProduceArgs, now = Date.now()): Promise<Buffer> {
  const head = Buffer.allocUnsafe(6);
  head.writeInt16BE(args.acks, 0);
  head.writeInt32BE(args.timeout, 2);
  const parts: Buffer[] = [writeString(args.transactionalId), head, int32(args.topicData.length)];
  for (const t of args.topicData) {
    parts.push(writeString(t.topic), int32(t.partitions.length));
    for (const p of t.partitions) parts.push(await encodePartition(args, p, now));
  }
  return Buffer.concat(parts);
}

interface KafkaJsEncoder {
  buf: Buffer;
  offset: number;
}

type ProduceRequest = (args: ProduceArgs) => { encode: () => Promise<unknown> };

/**
 * kafkajs's v3 Produce request with `encode` replaced by encodeProduce() for the
 * messages it can write (canEncode), kafkajs's own otherwise. The result is a kafkajs
 * Encoder holding the bytes, which is what kafkajs frames the request from.
 */
export function fastProduceRequest(
  original: ProduceRequest,
  Encoder: new () => KafkaJsEncoder,
): ProduceRequest & { original: ProduceRequest } {
  const request = (args: ProduceArgs) => {
    const req = original(args);
    if (!canEncode(args)) {
      // kafkajs would write all of a ranged value's buffer: refuse instead.
      if (args.topicData?.some((t) => t.partitions?.some((p) => p.messages?.some(hasRange))))
        throw new Error('a message with a value range that the Produce encoder cannot write');
      return req;
    }
    return {
      ...req,
      encode: async () => {
        const e = new Encoder();
        e.buf = await encodeProduce(args);
        e.offset = e.buf.length;
        return e;
      },
    };
  };
  return Object.assign(request, { original });
}

export type RequestFramer = (args: {
  correlationId: number;
  clientId: string | null | undefined;
  request: { apiKey: number; apiVersion: number; encode: () => Promise<KafkaJsEncoder> };
}) => Promise<KafkaJsEncoder>;

/**
 * kafkajs's request framing (protocol/request.js: size, api key and version, correlation
 * id, client id, then the request's body) in one buffer of the exact size: kafkajs copies
 * the body into a zero-filled buffer of the next power of two, then all of it into
 * another, for every request (a Produce request's body is its record batches). The bytes
 * are kafkajs's (a test compares them). Applies to every request of the client.
 */
export function framedRequest(
  original: RequestFramer,
  Encoder: new () => KafkaJsEncoder,
): RequestFramer & { original: RequestFramer } {
  const framer: RequestFramer = async ({
    correlationId,
    clientId,
    request: { apiKey, apiVersion, encode },
  }) => {
    const payload = await encode();
    const body = payload.buf;
    const bodyLength = payload.offset;
    const idLength = clientId == null ? 0 : Buffer.byteLength(clientId, 'utf8');
    // size, api key, api version, correlation id, client id's length and bytes, body
    const size = 2 + 2 + 4 + 2 + idLength + bodyLength;
    const buf = Buffer.allocUnsafe(4 + size);
    buf.writeInt32BE(size, 0);
    buf.writeInt16BE(apiKey, 4);
    buf.writeInt16BE(apiVersion, 6);
    buf.writeInt32BE(correlationId, 8);
    if (clientId == null) buf.writeInt16BE(-1, 12);
    else {
      buf.writeInt16BE(idLength, 12);
      buf.write(clientId, 14, idLength, 'utf8');
    }
    buf.set(bodyLength === body.length ? body : body.subarray(0, bodyLength), 14 + idLength);
    const e = new Encoder();
    e.buf = buf;
    e.offset = buf.length;
    return e;
  };
  return Object.assign(framer, { original });
}
