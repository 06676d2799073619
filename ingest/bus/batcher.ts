/**
 * Collects concurrent publishes into few large sends. A publish waits at most `lingerMs`
 * for company, a send carries at most `maxMessages` messages and `maxBytes` bytes (a
 * broker refuses larger requests), sends go one at a time in order (the idempotent
 * producer's sequence numbers need that), and each caller resolves once all of its own
 * messages are acknowledged, or rejects with the error of the send that failed.
 */

import { RateMeter, retryAfterSeconds } from './encode.ts';
import { BusBackpressureError } from './types.ts';

export interface BatcherOptions {
  lingerMs: number;
  maxMessages: number;
  maxBytes: number;
  /** Messages queued or in flight before add() pushes back. */
  maxQueued: number;
  clock?: () => number;
}

export interface Sized {
  bytes: number;
}

interface Waiting<M> {
  messages: M[];
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Batcher<M extends Sized> {
  private queue: Array<Waiting<M>> = [];
  private outstanding = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private readonly rate = new RateMeter();
  private readonly clock: () => number;
  /** Sends made and messages they carried, for metrics and tests. */
  readonly sent = { batches: 0, messages: 0 };

  constructor(
    private readonly options: BatcherOptions,
    private readonly send: (messages: M[]) => Promise<void>,
  ) {
    this.clock = options.clock ?? Date.now;
  }

  /** Messages queued or in flight. */
  get queued(): number {
    return this.outstanding;
  }

  add(messages: M[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    // A publish larger than the whole queue still goes through when nothing else waits.
    if (this.outstanding > 0 && this.outstanding + messages.length > this.options.maxQueued) {
      const backlog = this.outstanding + messages.length - Math.floor(this.options.maxQueued * 0.9);
      return Promise.reject(
        new BusBackpressureError(
          `${this.outstanding} messages are waiting to be sent (limit ${this.options.maxQueued})`,
          retryAfterSeconds(backlog, this.rate.perSecond(this.clock())),
        ),
      );
    }
    this.outstanding += messages.length;
    return new Promise((resolve, reject) => {
      this.queue.push({ messages, resolve, reject });
      const queuedNow = this.queue.reduce((n, w) => n + w.messages.length, 0);
      this.schedule(queuedNow >= this.options.maxMessages ? 0 : this.options.lingerMs);
    });
  }

  /** Sends whatever is queued now, and resolves once every send so far has finished. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.sending = this.sending.then(() => this.sendQueued());
    return this.sending;
  }

  private schedule(ms: number): void {
    if (this.timer && ms > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sending = this.sending.then(() => this.sendQueued());
    }, ms);
  }

  private async sendQueued(): Promise<void> {
    const waiting = this.queue;
    this.queue = [];
    if (waiting.length === 0) return;
    const chunks: M[][] = [];
    // The chunk holding each caller's last message: once it is sent, the caller is done.
    const lastChunk: number[] = [];
    let chunk: M[] = [];
    let chunkBytes = 0;
    for (const w of waiting) {
      for (const m of w.messages) {
        if (
          chunk.length > 0 &&
          (chunk.length >= this.options.maxMessages || chunkBytes + m.bytes > this.options.maxBytes)
        ) {
          chunks.push(chunk);
          chunk = [];
          chunkBytes = 0;
        }
        chunk.push(m);
        chunkBytes += m.bytes;
      }
      lastChunk.push(chunks.length);
    }
    chunks.push(chunk);
    let next = 0;
    try {
      for (let i = 0; i < chunks.length; i++) {
        await this.send(chunks[i]!);
        this.sent.batches++;
        this.sent.messages += chunks[i]!.length;
        this.rate.record(chunks[i]!.length, this.clock());
        for (; next < waiting.length && lastChunk[next] === i; next++) this.done(waiting[next]!);
      }
    } catch (err) {
      // Callers with anything in the failed send or after it hear of the failure; their
      // earlier messages may have been written, so a retry can duplicate (at-least-once).
      for (; next < waiting.length; next++) this.done(waiting[next]!, err as Error);
    }
  }

  private done(w: Waiting<M>, err?: Error): void {
    this.outstanding -= w.messages.length;
    if (err) w.reject(err);
    else w.resolve();
  }
}
