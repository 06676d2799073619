import type { Event } from '../../model/event.ts';
import { DEAD_LETTER_BODY_CHARS, preview } from '../encode.ts';
import { writeJson } from '../../model/json-bytes.ts';
import { type JsonWriter, type PublishBatch, type Topic, topicOf } from '../types.ts';

/**
 * A publish for the embedded bus: each event is written as UTF-8 JSON into its topic's
 * buffer as it is added, one newline after each, so no string per event is built and
 * the commit copies runs of whole messages instead of encoding them one by one.
 */
export class EmbeddedBatch implements PublishBatch {
  length = 0;
  readonly staged: Record<Topic, Staged | undefined> = { logs: undefined, metrics: undefined };
  /** Events refused, in index order, with why and what to keep of them. */
  readonly refused: Array<{ index: number; reason: string; body: string }> = [];
  published = false;

  constructor(
    readonly owner: object,
    private readonly maxEventBytes: number,
    private readonly pool: BufferPool,
  ) {}

  add(event: Event): void {
    if (typeof event !== 'object' || event === null || Array.isArray(event)) {
      this.refused.push({
        index: this.length++,
        reason: 'not an event object',
        body: preview(event),
      });
      return;
    }
    try {
      this.addJson(topicOf(event), '', (buf, at) => writeJson(event, buf, at));
    } catch (err) {
      // writeJson throws what JSON.stringify throws, before anything is staged.
      this.refused.push({
        index: this.length - 1,
        reason: `event cannot be serialized as JSON: ${(err as Error).message}`,
        body: preview(event),
      });
    }
  }

  addJson(topic: Topic, _key: string, write: JsonWriter): void {
    const index = this.length++;
    const staged = (this.staged[topic] ??= new Staged(this.pool.take()));
    const start = staged.used;
    let end = write(staged.buffer, start);
    const size = end - start;
    if (size > this.maxEventBytes) {
      const whole = Buffer.allocUnsafe(size);
      write(whole, 0);
      this.refused.push({
        index,
        reason: `event of ${size} bytes exceeds the limit of ${this.maxEventBytes}`,
        body: whole.toString('utf8').slice(0, DEAD_LETTER_BODY_CHARS),
      });
      return;
    }
    if (end + 1 > staged.buffer.length) {
      staged.grow(end + 1, this.pool);
      end = write(staged.buffer, start);
    }
    staged.buffer[end] = NEWLINE;
    staged.ends.push(end);
    staged.used = end + 1;
  }

  /** Indexes of the events not refused, ascending. */
  accepted(): number[] {
    const out: number[] = [];
    let r = 0;
    for (let i = 0; i < this.length; i++) {
      if (r < this.refused.length && this.refused[r]!.index === i) r++;
      else out.push(i);
    }
    return out;
  }

  /** Gives the buffers back for other batches; the batch is empty afterwards. */
  release(): void {
    for (const topic of ['logs', 'metrics'] as const) {
      const staged = this.staged[topic];
      if (staged) this.pool.give(staged.buffer);
      this.staged[topic] = undefined;
    }
  }
}

const NEWLINE = 0x0a;

/** One topic's messages of a batch: their bytes, each followed by a newline. */
export class Staged {
  used = 0;
  /** Where each message ends (its newline's position). */
  readonly ends: number[] = [];

  constructor(public buffer: Buffer) {}

  grow(needed: number, pool: BufferPool): void {
    const bigger = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(bigger, 0, 0, this.used);
    pool.give(this.buffer);
    this.buffer = bigger;
  }
}

/**
 * Staging buffers, reused: a request's events fill a few hundred KiB, and a fresh
 * buffer of that size is its own mapping to fault in and unmap every time.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(buffer: Buffer): void {
    // Grown buffers go back too, up to a bound on what the pool holds.
    if (this.free.length < this.keep && buffer.length <= this.size * 16) this.free.push(buffer);
  }
}
