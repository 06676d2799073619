/**
 * Checkpointing: the rules engine's state, saved with the bus positions it reflects. On
 * start the engine is restored and the bus replayed from those positions, so no window is
 * lost, and a replayed alert keeps its id, which the remediator's idempotency claims turn
 * away.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { EngineSnapshot } from '../rules/index.ts';
import type { Logger } from './logger.ts';

export interface Checkpoint {
  engine: EngineSnapshot;
  /** Next offset per `topic/partition` (the embedded bus has partition 0 only). */
  offsets: Record<string, number>;
  at: number;
}

export class Checkpoints {
  constructor(
    /** The checkpoint file; `${path}.tmp` is written first. */
    readonly path: string,
    private readonly logger: Logger,
    /** Counts a checkpoint that could not be written, for the faults metric. */
    private readonly onWriteFailure: () => void,
  ) {}

  /** The last checkpoint, or undefined when there is none or it cannot be read. */
  read(): Checkpoint | undefined {
    if (!existsSync(this.path)) return undefined;
    try {
      return JSON.parse(readFileSync(this.path, 'utf8')) as Checkpoint;
    } catch (err) {
      this.logger.warn(
        { err },
        'the rule snapshot could not be read; starting from the beginning of the bus',
      );
      return undefined;
    }
  }

  /**
   * Atomically: a crash leaves the previous checkpoint or this one, never half of one.
   * Returns the bytes written.
   */
  write(state: Omit<Checkpoint, 'at'>): number {
    const checkpoint: Checkpoint = { ...state, at: Date.now() };
    const tmp = `${this.path}.tmp`;
    const text = JSON.stringify(checkpoint);
    writeFileSync(tmp, text);
    renameSync(tmp, this.path);
    return Buffer.byteLength(text);
  }

  /**
   * write, with a failure (taking the state included) logged and counted instead of
   * thrown; `onWritten` gets the time it held the event loop (all of it is synchronous:
   * taking the state, serializing, writing) and the bytes written.
   */
  tryWrite(
    state: () => Omit<Checkpoint, 'at'>,
    onWritten?: (seconds: number, bytes: number) => void,
  ): boolean {
    try {
      const began = performance.now();
      const bytes = this.write(state());
      onWritten?.((performance.now() - began) / 1000, bytes);
      return true;
    } catch (err) {
      this.onWriteFailure();
      this.logger.error(
        { err },
        'the rule snapshot could not be written; retrying at the next interval',
      );
      return false;
    }
  }
}

/** Checkpoints before partitions were recorded name the topic alone (partition 0). */
export function partitionedOffsets(offsets: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(offsets).map(([k, v]) => [k.includes('/') ? k : `${k}/0`, v]),
  );
}
