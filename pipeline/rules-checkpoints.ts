/**
 * The rules' checkpoints as `drover serve` keeps them (docs/architecture.md#checkpoints):
 * restored from the checkpoint store (checkpoint-store.ts), or once from the JSON
 * snapshot earlier versions wrote (checkpoint.ts), which the first checkpoint written
 * then replaces; written incrementally in slices at each interval, and all at once at
 * shutdown.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../rules/index.ts';
import { Checkpoints, partitionedOffsets } from './checkpoint.ts';
import { CheckpointStore, EntryBatch, type WriteStats } from './checkpoint-store.ts';
import type { Logger } from './logger.ts';

export interface Restored {
  offsets: Record<string, number>;
  reset: string[];
  at: number;
  /** Where the state came from: the store, or the JSON snapshot of an earlier version. */
  from: 'store' | 'json';
}

export interface RuleCheckpointHooks {
  /** A checkpoint that could not be written or read (the faults metric). */
  onFailure: () => void;
  onWritten?: (stats: WriteStats, diskBytes: number) => void;
}

export class RuleCheckpoints {
  readonly store: CheckpointStore;
  private readonly json: Checkpoints;
  /** The JSON snapshot restored from, removed once a checkpoint has been written. */
  private migrating = false;
  private writing: Promise<boolean> | undefined;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
    private readonly hooks: RuleCheckpointHooks,
    private readonly sliceMs = 2,
  ) {
    this.store = new CheckpointStore(join(stateDir, 'rules-state.db'));
    this.json = new Checkpoints(join(stateDir, 'rules-snapshot.json'), logger, hooks.onFailure);
  }

  /**
   * Restores the engine from the last checkpoint, if any, and from then on tracks its
   * changes. Returns the offsets its state reflects.
   */
  restore(engine: Engine): Restored | undefined {
    let stored: ReturnType<CheckpointStore['read']>;
    try {
      stored = this.store.read();
    } catch (err) {
      this.hooks.onFailure();
      this.logger.warn(
        { err },
        'the rule checkpoint could not be read; starting from the beginning of the bus',
      );
      engine.trackChanges(true);
      return undefined;
    }
    if (stored) {
      const { reset } = engine.restoreChanges(stored);
      return { offsets: partitionedOffsets(stored.offsets), reset, at: stored.at, from: 'store' };
    }
    const old = this.json.read();
    engine.trackChanges(true);
    if (!old) return undefined;
    const { reset } = engine.restore(old.engine);
    engine.trackChanges(true);
    this.migrating = true;
    return { offsets: partitionedOffsets(old.offsets), reset, at: old.at, from: 'json' };
  }

  /**
   * Starts writing a checkpoint in slices, unless one is being written; a failure is
   * logged and counted, and the next checkpoint is a full one.
   */
  start(engine: Engine, offsets: Record<string, number>): Promise<boolean> | undefined {
    if (this.writing) return undefined;
    const capture = engine.capture(new EntryBatch());
    this.writing = this.store
      .write(capture, offsets, { sliceMs: this.sliceMs })
      .then(
        (stats) => this.written(stats),
        (err: unknown) => {
          engine.abandonCapture(capture);
          this.failed(err);
          return false;
        },
      )
      .finally(() => {
        this.writing = undefined;
      });
    return this.writing;
  }

  /** A checkpoint now, all at once, after the one being written (shutdown). */
  async flush(engine: Engine, offsets: Record<string, number>): Promise<boolean> {
    if (this.writing) await this.writing;
    return this.writeNow(engine, offsets);
  }

  /** A checkpoint now, all at once; false (logged, counted) when it fails or one is being written. */
  writeNow(engine: Engine, offsets: Record<string, number>): boolean {
    if (this.writing) return false;
    const capture = engine.capture(new EntryBatch());
    try {
      return this.written(this.store.writeNow(capture, offsets));
    } catch (err) {
      engine.abandonCapture(capture);
      this.failed(err);
      return false;
    }
  }

  private written(stats: WriteStats): boolean {
    if (this.migrating) {
      this.migrating = false;
      for (const path of [this.json.path, `${this.json.path}.tmp`])
        if (existsSync(path)) rmSync(path, { recursive: true, force: true });
    }
    this.hooks.onWritten?.(stats, this.store.diskBytes());
    return true;
  }

  private failed(err: unknown): void {
    this.hooks.onFailure();
    this.logger.error(
      { err },
      'the rule snapshot could not be written; retrying at the next interval',
    );
  }

  close(): void {
    this.store.close();
  }
}
