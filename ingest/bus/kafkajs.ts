import { createRequire } from 'node:module';
import type * as KafkaJs from 'kafkajs';
import { corruptAwareBatch, DECOMPRESSED_BUDGET, fastDecodeMessages } from './kafka-fetch.ts';
import { groupMessagesPerPartition } from './kafka-partition.ts';
import { fastProduceRequest, framedRequest } from './kafka-produce.ts';
import { lz4Compress, lz4Decompress } from './lz4.ts';

/**
 * kafkajs, loaded when a Kafka bus (or a Kafka scan) is first made, not when Drover starts
 * (most configurations use the embedded bus), with the fix below applied once.
 *
 * kafkajs 2.2.4 (its last release) re-arms a timer on every broker connection forever
 * once the connection has answered one request: `RequestQueue.scheduleCheckPendingRequests`
 * computes `throttledUntil - now`, which is negative when the broker never throttled,
 * and schedules `checkPendingRequests` after it (1 ms) even with nothing pending; that
 * check schedules the next. Every connection of a process that is doing nothing
 * (producer, consumer, admin) so wakes up about a thousand times a second; an idle
 * rules worker spent most of its CPU there (bench/README.md, "Idle rules worker").
 *
 * The replacement schedules a check only when it has something to do: requests are
 * pending (at the end of the throttle, or after kafkajs's own 10 ms interval when not
 * throttled), or the connection is throttled. A request that cannot be sent at once is
 * queued by `push`, which schedules a check, and every answered request runs the check
 * itself (`fulfillRequest`), so nothing queued is left without one. Applied only to the
 * method kafkajs 2.2.4 has (its source is compared): another version is left as it is.
 */
const requireLib = createRequire(import.meta.url);
let loaded: typeof KafkaJs | undefined;
/** Whether kafkajs's Produce requests are encoded by kafka-produce.ts (fastProduce). */
let produceEncoded = false;

/** kafkajs's own interval for re-checking pending requests (requestQueue/index.js). */
const CHECK_PENDING_REQUESTS_INTERVAL = 10;

/** The method as kafkajs 2.2.4 ships it, whitespace and comments aside. */
const BUGGY = [
  'scheduleCheckPendingRequests(){letscheduleAt=this.throttledUntil-Date.now()',
  'if(!this.throttleCheckTimeoutId){if(this.pending.length>0){scheduleAt=scheduleAt>0?scheduleAt:CHECK_PENDING_REQUESTS_INTERVAL}',
  'this.throttleCheckTimeoutId=setTimeout(()=>{this.throttleCheckTimeoutId=nullthis.checkPendingRequests()},scheduleAt)}}',
].join('');

interface RequestQueueLike {
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  pending: unknown[];
  checkPendingRequests: (this: RequestQueueLike) => void;
  scheduleCheckPendingRequests: (this: RequestQueueLike) => void;
}

function squeeze(source: string): string {
  return source.replace(/\/\/[^\n]*/g, '').replace(/\s+/g, '');
}

function fixIdleTimerLoop(): void {
  let RequestQueue: { prototype: RequestQueueLike };
  try {
    RequestQueue = requireLib('kafkajs/src/network/requestQueue/index.js') as {
      prototype: RequestQueueLike;
    };
  } catch {
    return;
  }
  const proto = RequestQueue.prototype;
  if (squeeze(String(proto.scheduleCheckPendingRequests)) !== BUGGY) return;
  proto.scheduleCheckPendingRequests = function (this: RequestQueueLike) {
    if (this.throttleCheckTimeoutId) return;
    const throttled = this.throttledUntil - Date.now();
    // Nothing waits and nothing is throttled: the next push or answer checks again.
    if (this.pending.length === 0 && throttled <= 0) return;
    const after = throttled > 0 ? throttled : CHECK_PENDING_REQUESTS_INTERVAL;
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, after);
  };
}

/**
 * kafkajs's Produce request (v3, which v4-v7 reuse) encoded by kafka-produce.ts, every
 * request framed in one buffer of its size (framedRequest), and its
 * grouping of a send's messages per partition made linear (kafka-partition.ts). Set in
 * the module cache before kafkajs loads, so the modules requiring them take them; left
 * as they are if kafkajs's layout is not the one of 2.2.4.
 */
function fastProduce(): void {
  try {
    const path = requireLib.resolve('kafkajs/src/protocol/requests/produce/v3/request.js');
    const original = requireLib(path) as Parameters<typeof fastProduceRequest>[0];
    const Encoder = requireLib('kafkajs/src/protocol/encoder.js') as Parameters<
      typeof fastProduceRequest
    >[1];
    const cached = requireLib.cache[path];
    if (!cached || typeof original !== 'function' || typeof Encoder !== 'function') return;
    cached.exports = fastProduceRequest(original, Encoder);
    produceEncoded = true;
    // Every request framed in one buffer (framedRequest).
    const requestPath = requireLib.resolve('kafkajs/src/protocol/request.js');
    const framer = requireLib(requestPath) as Parameters<typeof framedRequest>[0];
    const cachedRequest = requireLib.cache[requestPath];
    if (cachedRequest && typeof framer === 'function')
      cachedRequest.exports = framedRequest(framer, Encoder);
  } catch {
    return;
  }
  try {
    const path = requireLib.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
    requireLib(path);
    const cached = requireLib.cache[path];
    if (cached && typeof cached.exports === 'function') cached.exports = groupMessagesPerPartition;
  } catch {
    return;
  }
}

/**
 * The records of kafkajs's Fetch responses (v4-v11) decoded by kafka-fetch.ts, set in the
 * module cache before kafkajs loads as fastProduce() does, and its consumer's Batch made
 * to deliver a partition cut by a corrupt batch (corruptAwareBatch); left as they are if
 * kafkajs's layout is not the one of 2.2.4.
 */
function fastFetch(): void {
  try {
    const path = requireLib.resolve('kafkajs/src/protocol/requests/fetch/v4/decodeMessages.js');
    const original = requireLib(path) as Parameters<typeof fastDecodeMessages>[0];
    const RecordBatch = requireLib('kafkajs/src/protocol/recordBatch/v0/decoder.js') as Parameters<
      typeof fastDecodeMessages
    >[1];
    const Decoder = requireLib('kafkajs/src/protocol/decoder.js') as Parameters<
      typeof fastDecodeMessages
    >[2];
    const cached = requireLib.cache[path];
    if (
      !cached ||
      typeof original !== 'function' ||
      typeof RecordBatch !== 'function' ||
      typeof Decoder !== 'function'
    )
      return;
    const batchPath = requireLib.resolve('kafkajs/src/consumer/batch.js');
    const Batch = requireLib(batchPath) as Parameters<typeof corruptAwareBatch>[0];
    const cachedBatch = requireLib.cache[batchPath];
    if (!cachedBatch || typeof Batch !== 'function') return;
    // Both or neither: a corrupt batch marked but not delivered would be fetched in a loop.
    cached.exports = fastDecodeMessages(original, RecordBatch, Decoder);
    cachedBatch.exports = corruptAwareBatch(Batch);
  } catch {
    return;
  }
}

/**
 * lz4.ts as kafkajs's LZ4 codec (it ships none), for what kafka-produce.ts and
 * kafka-fetch.ts leave to kafkajs: another client's message sets, or kafkajs's own
 * encoder. A batch decompresses to at most DECOMPRESSED_BUDGET bytes here too.
 */
function registerLz4(lib: typeof KafkaJs): void {
  const codec = {
    compress: (encoder: { buffer: Buffer }) => Promise.resolve(lz4Compress(encoder.buffer)),
    decompress: (buffer: Buffer) => Promise.resolve(lz4Decompress(buffer, DECOMPRESSED_BUDGET)),
  };
  (lib.CompressionCodecs as Record<number, () => unknown>)[lib.CompressionTypes.LZ4] = () => codec;
}

/**
 * A property a consumer's `eachBatch` handler may carry: a function told every batch of
 * each fetch response as kafkajs's consumer gets it, the empty ones too (one per
 * partition the fetch asked for, less the paused and the seeking: kafkajs's own filter),
 * before any is handled. kafkajs hands the handler only batches with messages, so a
 * partition with nothing new would otherwise say nothing of its log end; each batch
 * carries its partition's high watermark as the broker answered (KafkaBus.consume notes
 * it in TaskConsumer.ends).
 */
export const ON_FETCH = Symbol('drover.onFetch');

/** What ON_FETCH is told: a kafkajs consumer Batch, as far as it is read. */
export interface FetchedBatch {
  topic: string;
  partition: number;
  highWatermark: string;
}

interface RunnerLike {
  /** `asked`: performance.now() before the fetch was sent (the broker answered after). */
  eachBatch?: { [ON_FETCH]?: (batches: FetchedBatch[], asked: number) => void };
  fetch: (this: RunnerLike, nodeId: number) => Promise<FetchedBatch[]>;
}

/**
 * kafkajs's consumer Runner made to tell a handler's ON_FETCH every fetch's batches
 * (see ON_FETCH). Left as it is if kafkajs's layout is not the one of 2.2.4.
 */
function tellFetches(): void {
  let Runner: { prototype: RunnerLike };
  try {
    Runner = requireLib('kafkajs/src/consumer/runner.js') as { prototype: RunnerLike };
  } catch {
    return;
  }
  const original = Runner.prototype.fetch;
  if (typeof original !== 'function' || original.length !== 1) return;
  Runner.prototype.fetch = async function (this: RunnerLike, nodeId: number) {
    const asked = performance.now();
    const batches = await original.call(this, nodeId);
    this.eachBatch?.[ON_FETCH]?.(batches, asked);
    return batches;
  };
}

export function kafkajs(): typeof KafkaJs {
  if (!loaded) {
    fastProduce();
    fastFetch();
    loaded = requireLib('kafkajs') as typeof KafkaJs;
    registerLz4(loaded);
    fixIdleTimerLoop();
    tellFetches();
  }
  return loaded;
}

/**
 * Whether a produced message's value may be a range of a shared buffer
 * (ProduceMessage.valueStart in kafka-produce.ts): only when Drover's encoder writes
 * the Produce requests, since kafkajs's own would send the whole buffer.
 */
export function rangedValues(): boolean {
  kafkajs();
  return produceEncoded;
}
