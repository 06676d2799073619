import { unzipSync } from 'node:zlib';
import { crc32c } from './crc32c.ts';
import { Lz4TooLargeError, lz4Decompress } from './lz4.ts';

/**
 * The records of a Fetch response (versions 4-11, which kafkajs all decode with
 * `fetch/v4/decodeMessages.js`), decoded straight from the response's buffer: kafkajs
 * makes a Decoder and a Buffer per record, a dozen 64-bit `Long`s (BigInts) per record
 * for its offset and timestamp, rebuilds the headers object once per header, and
 * decompresses gzip through the thread pool in 16 KiB pieces; that was most of what a
 * compressed topic costs a consumer beyond an uncompressed one (bench/README.md,
 * "Rules consumer"). The messages are the objects kafkajs makes (same fields, same
 * order, same values: a test compares them), so kafkajs stays the client: the Batch,
 * aborted transactions and control records, offsets and commits are its own.
 *
 * Only record batches of magic 2, uncompressed, gzip or lz4 (lz4.ts), take this path; a record set in
 * the older message-set format, and a batch of another magic or codec, are decoded by
 * kafkajs as before.
 *
 * Integrity: each magic-2 batch's CRC-32C (over its attributes to its end, as Kafka's
 * record batch format defines it) is checked before anything in it is read, as Kafka's
 * own consumer does (`check.crcs=true`, its default): a batch damaged on disk or on the
 * way is refused (CorruptRecordBatchError), not decoded into wrong events. The CRC is
 * over the compressed bytes, linear in them (crc32c.ts).
 *
 * A refused batch fails its partition only: fastDecodeMessages() hands kafkajs the records
 * before it (if any) and marks the partition's record set with the error (corruptionOf()),
 * so the other partitions of the same Fetch response are delivered as usual; the consumer
 * decides what to do (ingest/bus/kafka.ts, `bus.corruptBatch`). Thrown from kafkajs's
 * response decoding instead, it failed the whole response, every partition the broker
 * leads, again at each retry (docs/scale-out.md, "A corrupt record batch").
 *
 * Hostile input (a corrupt or crafted batch from the broker): every length is checked
 * against the bytes that hold it and a varint is at most 5 bytes (10 for a varlong), so
 * a batch is decoded in time linear in its bytes, or refused with an error naming its
 * offset; kafkajs's own decoder reads past a record's end as zeros and can be driven into
 * 2^31 header iterations by one record. Memory: a record set's compressed batches together
 * decompress to at most DECOMPRESSED_BUDGET bytes. A batch that would pass it ends the
 * record set there (the consumer fetches the rest next time, as after a partial batch),
 * unless it is the first, which is then refused: a gzip or lz4 bomb is an error, not an
 * allocation.
 */

/** The most a partition's fetched compressed batches may decompress to, together (64 MiB). */
export const DECOMPRESSED_BUDGET = 64 << 20;

const MAGIC = 2;
/** firstOffset (8) + length (4) + the batch header after the length (45) + count (4). */
const RECORD_BATCH_OVERHEAD = 49;
/** Bytes of a batch after its length field, up to and including the records count. */
const AFTER_LENGTH = 49;
const MAGIC_OFFSET = 16;
const CODEC_MASK = 0x07;
const CODEC_NONE = 0;
const CODEC_GZIP = 1;
const CODEC_LZ4 = 3;
const TIMESTAMP_TYPE_FLAG = 0x08;
const TRANSACTIONAL_FLAG = 0x10;
const CONTROL_FLAG = 0x20;
/** The smallest record: length, attributes, timestamp and offset deltas, key, value, headers. */
const MIN_RECORD_BYTES = 7;
/** The smallest header: key length and value length. */
const MIN_HEADER_BYTES = 2;

/** The batch fields kafkajs gives each record as `batchContext`, in its order. */
export interface BatchContext {
  firstOffset: string;
  firstTimestamp: string;
  partitionLeaderEpoch: number;
  inTransaction: boolean;
  isControlBatch: boolean;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  maxTimestamp: string;
  timestampType: number;
  magicByte: number;
}

/** A record as kafkajs's record decoder returns it. */
export interface FetchedMessage {
  magicByte: number;
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | null | Array<Buffer | null>>;
  isControlRecord: boolean;
  batchContext: BatchContext;
}

/**
 * A record batch that cannot be decoded: a CRC-32C that does not match, a length or count
 * its bytes cannot hold, records that do not decompress or decompress past the budget.
 * Names the batch's offsets (the last as its header says: with a CRC mismatch the header
 * may be what is damaged), and its topic and partition once the consumer knows them
 * (locate()).
 */
export class CorruptRecordBatchError extends Error {
  topic: string | undefined;
  partition: number | undefined;
  /** Records of the batches before this one in its record set (their partition's fetch). */
  before: FetchedMessage[] = [];
  /**
   * A CRC mismatch: the first offset of the batch after this one in the same record set,
   * when one whose own CRC-32C matches starts where this one's length says it ends.
   */
  nextBase: string | undefined;
  /** A CRC mismatch: whether this batch ended its record set (nothing fetched after it). */
  last = false;
  /** Whether the batch's CRC-32C matched (refused for its records): its header is as written. */
  checked = false;

  constructor(
    /** What is wrong, and where. */
    readonly detail: string,
    /** The batch's first offset (decimal). */
    readonly firstOffset: string,
    /** Its header's lastOffsetDelta, when the header could be read. */
    readonly lastOffsetDelta: number | undefined,
  ) {
    super('');
    this.name = 'CorruptRecordBatchError';
    this.message = this.describe();
  }

  /** The batch's last offset as its header says (decimal), or undefined. */
  get lastOffset(): string | undefined {
    if (this.lastOffsetDelta === undefined) return undefined;
    return String(BigInt(this.firstOffset) + BigInt(this.lastOffsetDelta));
  }

  /** Names the topic and partition the batch was fetched from. */
  locate(topic: string, partition: number): this {
    this.topic = topic;
    this.partition = partition;
    this.message = this.describe();
    return this;
  }

  private describe(): string {
    const where = this.topic === undefined ? '' : ` in ${this.topic}/${this.partition}`;
    const last = this.lastOffset;
    const range =
      last === undefined
        ? `first offset ${this.firstOffset}`
        : `first offset ${this.firstOffset}, last offset ${last}`;
    return `corrupt Kafka record batch${where} (${range}): ${this.detail}`;
  }
}

/**
 * Where `bus.corruptBatch: skip` resumes a partition after the corrupt batch `bad`, fetched
 * at offset `fetched` with the partition's high watermark at `end` (fetched < end). The
 * batch's own header failed its CRC (its first offset, length and lastOffsetDelta may be
 * what is damaged), so it is believed only where the fetch confirms it (a batch refused
 * for its records after its CRC matched is skipped as its header says, up to `end`):
 *
 * - a batch whose CRC matches followed it in the fetch: that batch's first offset, as
 *   the fetch saw it (every offset before it and from `fetched` on is in the bad batch);
 * - nothing followed it and its header puts its end exactly at the high watermark: there;
 * - otherwise (a header past the high watermark, before the fetched offset, or with no
 *   batch after it to confirm it): one offset, `fetched + 1`. The broker then serves the
 *   batch again from its start, and the skip goes on one offset per fetch until the fetch
 *   is past the batch's real end. Never past a record the fetch did not show as damaged.
 */
export function skipTarget(bad: CorruptRecordBatchError, fetched: bigint, end: bigint): bigint {
  const one = fetched + 1n;
  if (bad.checked && bad.lastOffsetDelta !== undefined && bad.lastOffsetDelta >= 0) {
    // Its CRC matched: the header is as the broker wrote it.
    const next = BigInt(bad.firstOffset) + BigInt(bad.lastOffsetDelta) + 1n;
    return next > end ? end : next > fetched ? next : one;
  }
  if (bad.nextBase !== undefined) {
    const next = BigInt(bad.nextBase);
    if (next > fetched && next <= end) return next;
    return one;
  }
  if (bad.last && bad.lastOffsetDelta !== undefined && bad.lastOffsetDelta >= 0) {
    const first = BigInt(bad.firstOffset);
    const claimed = first + BigInt(bad.lastOffsetDelta) + 1n;
    if (first <= fetched && claimed === end && claimed > fetched) return claimed;
  }
  return one;
}

/** Where fastDecodeMessages() marks a record set cut short by a corrupt batch. */
const CORRUPT = Symbol('drover.corruptRecordBatch');

/**
 * The corrupt batch that ended a partition's record set, if one did: given the messages
 * array fastDecodeMessages() returned (kafkajs keeps it as its Batch's `rawMessages`).
 */
export function corruptionOf(messages: unknown): CorruptRecordBatchError | undefined {
  if (!Array.isArray(messages)) return undefined;
  return (messages as { [CORRUPT]?: CorruptRecordBatchError })[CORRUPT];
}

/** Where a decoding is in its buffer; one per record set, reused for every record. */
interface Cursor {
  buf: Buffer;
  at: number;
  end: number;
  /** For errors: the batch's first offset. */
  batch: string;
  /** For errors: its header's lastOffsetDelta, once read. */
  lastDelta: number | undefined;
  /** For errors: whether the batch's CRC-32C matched (its header is as written). */
  checked: boolean;
}

function fail(c: Cursor, what: string): never {
  const err = new CorruptRecordBatchError(`${what} at byte ${c.at}`, c.batch, c.lastDelta);
  err.checked = c.checked;
  throw err;
}

/** A zigzag varint of at most 5 bytes, as kafkajs computes it for valid ones. */
function varInt(c: Cursor): number {
  const { buf, end } = c;
  let result = 0;
  let shift = 0;
  let byte: number;
  do {
    if (c.at >= end) fail(c, 'a varint runs past the end');
    if (shift > 28) fail(c, 'a varint is longer than 5 bytes');
    byte = buf[c.at++]!;
    result += (byte & 0x7f) << shift;
    shift += 7;
  } while (byte >= 0x80);
  return (result >>> 1) ^ -(result & 1);
}

/**
 * A zigzag varlong of at most 10 bytes. Up to 7 bytes (|value| < 2^48) in a number;
 * longer ones as a bigint, with kafkajs's arithmetic (no wrap at 64 bits).
 */
function varLong(c: Cursor): number | bigint {
  const { buf, end } = c;
  let raw = 0;
  let scale = 1;
  let n = 0;
  for (;;) {
    if (c.at >= end) fail(c, 'a varlong runs past the end');
    const byte = buf[c.at++]!;
    raw += (byte & 0x7f) * scale;
    n++;
    if (byte < 0x80) break;
    if (n === 7) return varLongBig(c, raw);
    scale *= 128;
  }
  return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
}

function varLongBig(c: Cursor, low: number): bigint {
  const { buf, end } = c;
  let raw = BigInt(low);
  let shift = 49n;
  for (;;) {
    if (c.at >= end) fail(c, 'a varlong runs past the end');
    if (shift > 63n) fail(c, 'a varlong is longer than 10 bytes');
    const byte = buf[c.at++]!;
    raw += BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if (byte < 0x80) break;
  }
  return (raw >> 1n) ^ -(raw & 1n);
}

/** `length` bytes (-1: null) as a view of the buffer, as kafkajs's readVarIntBytes. */
function bytes(c: Cursor): Buffer | null {
  const length = varInt(c);
  if (length === -1) return null;
  if (length < 0 || length > c.end - c.at) fail(c, `a length of ${length} bytes`);
  const out = c.buf.subarray(c.at, c.at + length);
  c.at += length;
  return out;
}

/** Adds `first + delta` as kafkajs's Long does, as a decimal string. */
function plus(first: string, firstNumber: number, delta: number | bigint): string {
  if (typeof delta === 'number') {
    const sum = firstNumber + delta;
    if (Number.isSafeInteger(firstNumber) && Number.isSafeInteger(sum)) return String(sum);
    return String(BigInt(first) + BigInt(delta));
  }
  return String(BigInt(first) + delta);
}

/** Sets a header as kafkajs's reduce does: a repeated key makes an array of its values. */
function addHeader(
  headers: FetchedMessage['headers'],
  key: string,
  value: Buffer | null,
): FetchedMessage['headers'] {
  // Read as kafkajs reads it (an inherited `constructor` is not undefined), defined as its
  // object spread defines it (an own property, even `__proto__`).
  const was = (headers as Record<string, unknown>)[key];
  if (Array.isArray(was)) {
    // Only this object's own arrays are arrays (nothing inherited is): appended in place,
    // so repeating a key is linear, where kafkajs copies the array each time.
    (was as Array<Buffer | null>).push(value);
    return headers;
  }
  const next = was === undefined ? value : [was as Buffer | null, value];
  if (key === '__proto__')
    Object.defineProperty(headers, key, {
      value: next,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  else headers[key] = next;
  return headers;
}

/** The records of `c.buf[c.at, c.end)`, `count` of them, pushed onto `out`. */
function decodeRecords(
  c: Cursor,
  count: number,
  context: BatchContext,
  out: FetchedMessage[],
): void {
  if (count > (c.end - c.at) / MIN_RECORD_BYTES) fail(c, `${count} records in too few bytes`);
  const logAppend =
    context.timestampType === 1 && context.maxTimestamp ? context.maxTimestamp : undefined;
  const firstTimestamp = context.firstTimestamp;
  const firstTimestampNumber = Number(firstTimestamp);
  const firstOffset = context.firstOffset;
  const firstOffsetNumber = Number(firstOffset);
  const magicByte = context.magicByte;
  const isControlRecord = context.isControlBatch;
  const setEnd = c.end;
  for (let i = 0; i < count; i++) {
    const length = varInt(c);
    if (length < 0 || length > setEnd - c.at) fail(c, `a record of ${length} bytes`);
    const recordEnd = c.at + length;
    c.end = recordEnd;
    if (c.at >= recordEnd) fail(c, 'an empty record');
    const attributes = (c.buf[c.at++]! << 24) >> 24;
    const timestampDelta = varLong(c);
    const timestamp = logAppend ?? plus(firstTimestamp, firstTimestampNumber, timestampDelta);
    const offset = plus(firstOffset, firstOffsetNumber, varInt(c));
    const key = bytes(c);
    const value = bytes(c);
    const headerCount = varInt(c);
    let headers: FetchedMessage['headers'] = {};
    if (headerCount !== -1) {
      if (headerCount < 0 || headerCount > (recordEnd - c.at) / MIN_HEADER_BYTES)
        fail(c, `${headerCount} headers`);
      for (let h = 0; h < headerCount; h++) {
        const name = bytes(c);
        headers = addHeader(headers, name === null ? 'null' : name.toString('utf8'), bytes(c));
      }
    }
    out.push({
      magicByte,
      attributes,
      timestamp,
      offset,
      key,
      value,
      headers,
      isControlRecord,
      batchContext: context,
    });
    // kafkajs ignores what a record holds after its headers; so does this.
    c.at = recordEnd;
    c.end = setEnd;
  }
}

/** kafkajs's Decoder, as far as decodeMessages uses it. */
export interface KafkaJsDecoder {
  buffer: Buffer;
  offset: number;
  readInt32(): number;
  canReadBytes(n: number): boolean;
}

type DecodeMessages = (decoder: KafkaJsDecoder) => Promise<unknown[]>;
type RecordBatchDecoder = (decoder: KafkaJsDecoder) => Promise<{ records: unknown[] }>;

/**
 * The record set `buf[from, end)` (one partition's part of a Fetch response), or
 * undefined when it is not made of magic-2 batches (kafkajs decodes it then).
 * `fallback` decodes one batch this does not (another magic or codec) with kafkajs.
 */
export async function decodeRecordSet(
  buf: Buffer,
  from: number,
  end: number,
  fallback: (batch: Buffer) => Promise<unknown[]>,
  budget = DECOMPRESSED_BUDGET,
): Promise<unknown[] | undefined> {
  if (end - from <= MAGIC_OFFSET || buf[from + MAGIC_OFFSET] !== MAGIC) return undefined;
  const out: FetchedMessage[] = [];
  // Records of the whole batches decoded so far: none of a batch refused half-way.
  const whole = { records: 0 };
  try {
    await decodeInto(out, whole, buf, from, end, fallback, budget);
  } catch (err) {
    if (err instanceof CorruptRecordBatchError) err.before = out.slice(0, whole.records);
    throw err;
  }
  return out;
}

async function decodeInto(
  out: FetchedMessage[],
  whole: { records: number },
  buf: Buffer,
  from: number,
  end: number,
  fallback: (batch: Buffer) => Promise<unknown[]>,
  budget: number,
): Promise<void> {
  const c: Cursor = { buf, at: from, end, batch: '?', lastDelta: undefined, checked: false };
  let left = budget;
  let at = from;
  while (end - at >= RECORD_BATCH_OVERHEAD) {
    whole.records = out.length;
    const firstOffsetBig = buf.readBigInt64BE(at);
    const length = buf.readInt32BE(at + 8);
    const start = at + 12;
    c.batch = String(firstOffsetBig);
    c.lastDelta = undefined;
    c.checked = false;
    c.at = at + 8;
    // A batch cut by the fetch's size limit ends the set, as in kafkajs.
    if (length > end - start) break;
    if (length < AFTER_LENGTH) fail(c, `a batch of ${length} bytes`);
    const batchEnd = start + length;
    const magicByte = buf.readInt8(start + 4);
    if (magicByte === MAGIC) {
      c.lastDelta = buf.readInt32BE(start + 11);
      // The CRC covers attributes to the batch's end: checked before anything is read.
      c.at = start + 5;
      const stored = buf.readUInt32BE(start + 5);
      const actual = crc32c(buf, start + 9, batchEnd);
      if (stored !== actual) {
        const err = new CorruptRecordBatchError(
          `CRC-32C ${hex(actual)} of its bytes does not match the ${hex(stored)} it carries at byte ${c.at}`,
          c.batch,
          c.lastDelta,
        );
        err.nextBase = checkedBatchAt(buf, batchEnd, end);
        err.last = batchEnd >= end;
        throw err;
      }
      c.checked = true;
    }
    const attributes = buf.readInt16BE(start + 9);
    const codec = attributes & CODEC_MASK;
    if (
      magicByte !== MAGIC ||
      (codec !== CODEC_NONE && codec !== CODEC_GZIP && codec !== CODEC_LZ4)
    ) {
      for (const r of await fallback(buf.subarray(at, batchEnd))) out.push(r as FetchedMessage);
      at = batchEnd;
      continue;
    }
    const context: BatchContext = {
      firstOffset: c.batch,
      firstTimestamp: String(buf.readBigInt64BE(start + 15)),
      partitionLeaderEpoch: buf.readInt32BE(start),
      inTransaction: (attributes & TRANSACTIONAL_FLAG) > 0,
      isControlBatch: (attributes & CONTROL_FLAG) > 0,
      lastOffsetDelta: buf.readInt32BE(start + 11),
      producerId: String(buf.readBigInt64BE(start + 31)),
      producerEpoch: buf.readInt16BE(start + 39),
      firstSequence: buf.readInt32BE(start + 41),
      maxTimestamp: String(buf.readBigInt64BE(start + 23)),
      timestampType: (attributes & TIMESTAMP_TYPE_FLAG) > 0 ? 1 : 0,
      magicByte,
    };
    const count = buf.readInt32BE(start + 45);
    const recordsAt = start + AFTER_LENGTH;
    c.at = start + 45;
    if (codec === CODEC_NONE) {
      // kafkajs reads an array: -1 is empty.
      if (count < -1) fail(c, `a record count of ${count}`);
      c.at = recordsAt;
      c.end = batchEnd;
      if (count > 0) decodeRecords(c, count, context, out);
    } else if (count > 0) {
      // Past the budget: the rest is fetched again later; a first batch this large is refused.
      if (left < 1) break;
      const name = codec === CODEC_GZIP ? 'gzip' : 'lz4';
      let records: Buffer;
      try {
        const compressed = buf.subarray(recordsAt, batchEnd);
        records =
          codec === CODEC_GZIP
            ? unzipSync(compressed, { maxOutputLength: left })
            : lz4Decompress(compressed, left);
      } catch (err) {
        const tooLarge =
          err instanceof Lz4TooLargeError ||
          (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
        if (!tooLarge)
          fail(c, `${name} records that do not decompress (${(err as Error).message})`);
        if (left < budget) break;
        fail(c, `${name} records larger than ${budget} bytes`);
      }
      left -= records.length;
      const inner: Cursor = {
        buf: records,
        at: 0,
        end: records.length,
        batch: c.batch,
        lastDelta: c.lastDelta,
        checked: c.checked,
      };
      decodeRecords(inner, count, context, out);
    }
    at = batchEnd;
  }
}

/**
 * The first offset of the batch at `buf[at, end)` if a whole magic-2 batch whose CRC-32C
 * matches starts there, else undefined: after a batch whose CRC failed (whose length, read
 * outside its CRC, may be what is damaged), the offset the fetch saw the next batch at.
 * Linear in that batch's bytes, read once.
 */
function checkedBatchAt(buf: Buffer, at: number, end: number): string | undefined {
  if (end - at < RECORD_BATCH_OVERHEAD) return undefined;
  const length = buf.readInt32BE(at + 8);
  const start = at + 12;
  if (length < AFTER_LENGTH || length > end - start) return undefined;
  if (buf.readInt8(start + 4) !== MAGIC) return undefined;
  if (buf.readUInt32BE(start + 5) !== crc32c(buf, start + 9, start + length)) return undefined;
  return String(buf.readBigInt64BE(at));
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/**
 * kafkajs's `decodeMessages` with the magic-2 record sets decoded by decodeRecordSet();
 * anything else goes to kafkajs's own (`original`, and `RecordBatch` for one batch,
 * given a kafkajs `Decoder`).
 */
export function fastDecodeMessages(
  original: DecodeMessages,
  RecordBatch: RecordBatchDecoder,
  Decoder: new (buffer: Buffer) => KafkaJsDecoder,
): DecodeMessages & { original: DecodeMessages } {
  const fallback = async (batch: Buffer) => (await RecordBatch(new Decoder(batch))).records;
  const decode = async (decoder: KafkaJsDecoder) => {
    const start = decoder.offset;
    const size = decoder.readInt32();
    if (size <= 0 || !decoder.canReadBytes(size)) return [];
    const from = decoder.offset;
    let records: unknown[] | undefined;
    try {
      records = await decodeRecordSet(decoder.buffer, from, from + size, fallback);
    } catch (err) {
      if (!(err instanceof CorruptRecordBatchError)) throw err;
      // This partition's records end before the corrupt batch; the response's other
      // partitions decode on. The consumer reads the mark (corruptionOf()).
      records = err.before;
      Object.defineProperty(records, CORRUPT, { value: err });
    }
    if (records === undefined) {
      decoder.offset = start;
      return original(decoder);
    }
    decoder.offset = from + size;
    return records;
  };
  return Object.assign(decode, { original });
}

/** kafkajs's consumer Batch (consumer/batch.js), as far as corruptAwareBatch() uses it. */
export interface KafkaJsBatch {
  fetchedOffset: string;
  rawMessages: unknown[];
  isEmpty(): boolean;
  isEmptyIncludingFiltered(): boolean;
  isEmptyDueToFiltering(): boolean;
  lastOffset(): string;
}

/** Constructed with (topic, fetchedOffset, partitionData: { partition, messages, ... }). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a mixin's base takes any[]
type KafkaJsBatchClass = new (...args: any[]) => KafkaJsBatch;

/**
 * kafkajs's Batch, made to reach the consumer's handler when no record came before a
 * corrupt batch in its partition's record set: kafkajs skips an empty batch without a
 * word and fetches the same offset again at once (a loop), and a batch whose records were
 * all filtered out it resolves past. The error is told its topic and partition here. An
 * auto-resolving handler that ignores the mark (kafkajs's default, eachBatchAutoResolve)
 * resolves nothing past the fetched offset: lastOffset() is the one before it.
 */
export function corruptAwareBatch<B extends KafkaJsBatchClass>(Batch: B): B {
  return class CorruptAwareBatch extends Batch {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a mixin's constructor takes any[]
    constructor(...args: any[]) {
      // eslint-disable-next-line @typescript-eslint/no-unsafe-argument -- kafkajs's own arguments
      super(...args);
      const [topic, , partitionData] = args as [
        string,
        string,
        { partition: number; messages: unknown },
      ];
      corruptionOf(partitionData.messages)?.locate(topic, partitionData.partition);
    }

    override isEmpty(): boolean {
      return super.isEmpty() && corruptionOf(this.rawMessages) === undefined;
    }

    override isEmptyDueToFiltering(): boolean {
      return corruptionOf(this.rawMessages) === undefined && super.isEmptyDueToFiltering();
    }

    override lastOffset(): string {
      if (corruptionOf(this.rawMessages) !== undefined && this.isEmptyIncludingFiltered())
        return String(BigInt(this.fetchedOffset) - 1n);
      return super.lastOffset();
    }
  };
}
