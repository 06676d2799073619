/**
 * Appending to the embedded bus's log: the publishes of one flush go into chunks in one
 * transaction (a group commit), and each caller hears only of its own events.
 */
import type { Topic } from '../types.ts';
import type { EmbeddedBatch } from './batch.ts';
import {
  CHUNK_BYTES,
  CHUNK_MESSAGES,
  type ChunkStatements,
  NEWLINE,
  type OpenChunk,
  type Statements,
  storedBody,
  TOPICS,
} from './log.ts';

export interface AppendLog {
  stmts: Statements;
  chunks: Record<Topic, ChunkStatements>;
  /** A reused buffer per topic, as large as the largest chunk. */
  chunkBuffers: Record<Topic, Buffer>;
  /** Chunks are stored gzipped (log.ts#storedBody). */
  compress: boolean;
}

/** One transaction for every publish of the flush; each caller hears only of its own events. */
export function appendAll(log: AppendLog, batches: EmbeddedBatch[], received: number) {
  // Read inside the transaction: another process may have appended since our last flush.
  const open = new Map<Topic, OpenChunk>();
  for (const topic of TOPICS)
    open.set(topic, {
      next: log.chunks[topic].next.get(topic) as number,
      count: 0,
      used: 0,
      buffer: log.chunkBuffers[topic],
    });
  let bytes = 0;
  let messages = 0;
  const writeChunk = (topic: Topic) => {
    const o = open.get(topic)!;
    if (o.count === 0) return;
    const size = o.used - (o.count - 1);
    // Bound as UTF-8 bytes and stored as TEXT: no chunk-sized string is built, and
    // SQLite copies the bytes once instead of the binding measuring and encoding a string.
    // Or gzipped, as a BLOB: `size` stays the text's, for retention and the metrics.
    const text = o.buffer.subarray(0, o.used);
    const gz = storedBody(text, log.compress);
    if (gz) log.chunks[topic].insertCompressed.run(o.next - 1, o.count, received, size, gz);
    else log.chunks[topic].insert.run(o.next - 1, o.count, received, size, text);
    bytes += size;
    messages += o.count;
    o.count = 0;
    o.used = 0;
  };
  const results = batches.map((batch) => {
    for (const r of batch.refused) log.stmts.deadletter.run(received, r.reason, r.body);
    for (const topic of TOPICS) {
      const staged = batch.staged[topic];
      if (!staged) continue;
      const o = open.get(topic)!;
      const ends = staged.ends;
      let from = 0;
      for (let i = 0; i < ends.length;) {
        // The run of messages i..j-1 that fits the open chunk: at most CHUNK_MESSAGES and
        // CHUNK_BYTES, but an empty chunk takes any one event (its buffer holds the
        // largest a batch lets through).
        let j = i;
        while (
          j < ends.length &&
          o.count + (j - i) < CHUNK_MESSAGES &&
          (o.count + (j - i) === 0 || o.used + 1 + (ends[j]! - from) <= CHUNK_BYTES)
        )
          j++;
        if (j === i) {
          writeChunk(topic);
          continue;
        }
        if (o.count > 0) o.buffer[o.used++] = NEWLINE;
        const to = ends[j - 1]!;
        o.used += staged.buffer.copy(o.buffer, o.used, from, to);
        o.count += j - i;
        o.next += j - i;
        from = to + 1;
        i = j;
      }
    }
    return {
      accepted: batch.accepted(),
      rejected: batch.refused.map((r) => ({ index: r.index, reason: r.reason })),
    };
  });
  for (const topic of TOPICS) writeChunk(topic);
  const next = new Map<Topic, number>();
  for (const [topic, o] of open) next.set(topic, o.next);
  return { results, next, bytes, messages };
}
