/**
 * Retention of the embedded bus's log: what every consumer group has consumed goes once
 * it is older than the retention time, or oldest first while the log is over its size.
 */
import type { SqliteDatabase } from '../../storage/sqlite.ts';
import type { Topic } from '../types.ts';
import {
  type ChunkMeta,
  type ChunkStatements,
  chunkBytes,
  chunkText,
  type StoredBody,
  storedBody,
  type ConsumedChunk,
  type Statements,
  TOPICS,
} from './log.ts';

/** Chunks looked at per retention transaction. */
const RETENTION_CHUNK = 5_000;

/**
 * Where retention by size brings a log that reached its limit: this fraction of it. The
 * headroom means the publishes after a full log do not each pay for a trim (a partial
 * chunk is decompressed and rewritten), and a log is never left sitting exactly at its
 * limit, where publish refuses (index.ts) while there is nothing over it to drop.
 */
export const LOW_WATER = 0.9;

/** The log as retention sees it; `stored` is the bus's running count, kept in step. */
export interface RetentionLog {
  db: SqliteDatabase;
  stmts: Statements;
  chunks: Record<Topic, ChunkStatements>;
  stored: { bytes: number; messages: number };
}

/**
 * Drops what every consumer group has consumed and retention no longer covers: first
 * messages older than `retentionMs`, then, once the log has reached `retentionBytes`, the
 * oldest until it is back to LOW_WATER of that. Unconsumed messages are never dropped, and a topic is only ever cut at its start, so
 * what remains is contiguous. Returns how many messages went.
 */
export function applyRetention(
  log: RetentionLog,
  now: number,
  limits: { retentionMs: number; retentionBytes: number },
): number {
  // One IMMEDIATE transaction for the whole pass, each drop a savepoint in it: the bus
  // syncs each commit (synchronous=FULL), and a trim by size alternates between the topics
  // a chunk or two at a time, so a transaction a drop was hundreds of syncs per trim on
  // the event loop (bench/README.md, "the bus's retention by size"). On a failure the
  // whole pass rolls back, and the running counts with it.
  const before = { ...log.stored };
  try {
    return log.db.transaction(() => retain(log, now, limits)).immediate();
  } catch (err) {
    Object.assign(log.stored, before);
    throw err;
  }
}

function retain(
  log: RetentionLog,
  now: number,
  limits: { retentionMs: number; retentionBytes: number },
): number {
  const horizon = now - limits.retentionMs;
  let dropped = 0;
  const consumedUpTo = new Map<Topic, number>();
  for (const topic of TOPICS) {
    // With no group yet, nothing has been consumed: everything stays.
    const slowest = log.stmts.slowest.get(topic) as number | null;
    if (slowest !== null) consumedUpTo.set(topic, slowest);
  }
  for (const [topic, consumed] of consumedUpTo) {
    for (;;) {
      let whole = 0;
      const n = drop(log, topic, consumed, (chunks) => {
        let count = 0;
        for (const c of chunks) {
          if (c.received >= horizon) break;
          count += c.consumed;
          if (c.consumed === c.count) whole++;
        }
        return count;
      });
      dropped += n;
      // Another pass only when a full window of chunks went whole.
      if (whole < RETENTION_CHUNK) break;
    }
  }
  // By size, the oldest consumed message across topics goes first, down to the low-water
  // mark once the log has reached its limit.
  const target =
    log.stored.bytes >= limits.retentionBytes
      ? Math.floor(limits.retentionBytes * LOW_WATER)
      : limits.retentionBytes;
  while (log.stored.bytes > target) {
    const oldest: Array<{ topic: Topic; received: number }> = [];
    for (const [topic, consumed] of consumedUpTo) {
      const head = log.chunks[topic].head.get(1) as ChunkMeta | undefined;
      if (head && head.last - head.count + 1 < consumed)
        oldest.push({ topic, received: head.received });
    }
    if (oldest.length === 0) break;
    oldest.sort((a, b) => a.received - b.received);
    // Take from the oldest topic only what is older than the next topic's oldest.
    const until = oldest[1]?.received ?? Number.POSITIVE_INFINITY;
    const excessNow = log.stored.bytes - target;
    // Only the chunks this drop can take are read: those older than the other topic's
    // oldest, up to the excess (a window of RETENTION_CHUNK rows read for a chunk or two
    // taken made a trim quadratic in the chunks it drops).
    let seen = 0;
    const enough = (c: ChunkMeta, read: number) => {
      const stop = (read > 0 && c.received > until) || seen >= excessNow;
      seen += c.bytes;
      return stop;
    };
    const n = drop(
      log,
      oldest[0]!.topic,
      consumedUpTo.get(oldest[0]!.topic)!,
      (chunks) => {
        let excess = log.stored.bytes - target;
        let count = 0;
        for (const c of chunks) {
          if (excess <= 0 || (count > 0 && c.received > until)) break;
          if (c.consumed === c.count && c.bytes <= excess) {
            count += c.count;
            excess -= c.bytes;
            continue;
          }
          // Part of a chunk: its messages are taken at their mean size, and the loop
          // above comes back for more if that fell short.
          const perMessage = c.bytes / c.count;
          const take = Math.min(c.consumed, Math.max(1, Math.ceil(excess / perMessage)));
          count += take;
          break;
        }
        return count;
      },
      enough,
    );
    if (n === 0) break;
    dropped += n;
  }
  log.stmts.deleteDeadLetters.run(horizon);
  return dropped;
}

/**
 * Drops, in one transaction (a savepoint of the pass's), the leading `howMany` messages of
 * a topic, which `howMany` chooses among the consumed ones of its first RETENTION_CHUNK
 * chunks (fewer when `enough` says so before a chunk). A chunk dropped in part is
 * rewritten with the rest of its messages.
 */
function drop(
  log: RetentionLog,
  topic: Topic,
  consumedUpTo: number,
  howMany: (chunks: ConsumedChunk[]) => number,
  enough?: (chunk: ChunkMeta, read: number) => boolean,
): number {
  const statements = log.chunks[topic];
  const { count, bytes } = log.db
    .transaction(() => {
      const chunks: ConsumedChunk[] = [];
      // Rows are read one at a time and the read stops early (`enough`): leaving the loop
      // ends the statement before the writes below.
      for (const c of statements.head.iterate(RETENTION_CHUNK) as Iterable<ChunkMeta>) {
        if (enough?.(c, chunks.length)) break;
        const first = c.last - c.count + 1;
        if (first >= consumedUpTo) break;
        const consumed = Math.min(c.count, consumedUpTo - first);
        chunks.push({ ...c, consumed });
        if (consumed < c.count) break;
      }
      let left = howMany(chunks);
      let count = 0;
      let bytes = 0;
      let deleteUpTo: number | undefined;
      for (const c of chunks) {
        if (left <= 0) break;
        if (left >= c.count) {
          deleteUpTo = c.last;
          count += c.count;
          bytes += c.bytes;
          left -= c.count;
          continue;
        }
        const stored = statements.body.get(c.last) as StoredBody;
        const body = chunkText(stored);
        let cut = -1;
        for (let i = 0; i < left; i++) cut = body.indexOf('\n', cut + 1);
        const rest = body.slice(cut + 1);
        const restBytes = chunkBytes(rest, c.count - left);
        // Stored again the way it was: gzipped if it was (and still large enough).
        const gz = typeof stored === 'string' ? undefined : storedBody(Buffer.from(rest), true);
        statements.trim.run(c.count - left, restBytes, gz ?? rest, c.last);
        count += left;
        bytes += c.bytes - restBytes;
        left = 0;
      }
      if (deleteUpTo !== undefined) {
        statements.keepNext.run(topic);
        statements.deleteUpTo.run(deleteUpTo);
      }
      return { count, bytes };
    })
    .immediate();
  log.stored.messages -= count;
  log.stored.bytes -= bytes;
  return count;
}
