import { describe, expect, it } from 'vitest';
import { EntryBatch } from '../../pipeline/checkpoint-codec.ts';
import { ChunkPool, chunkPool } from '../../rules/changes.ts';
import { Engine } from '../../rules/index.ts';
import { ev, m, rule, s, T0 } from './helpers.ts';

/** An engine whose one rule holds `hosts` keys, `${prefix}0`..., its changes tracked. */
function hostEngine(prefix: string, hosts: number): Engine {
  const e = new Engine(
    [
      rule({
        name: 'freq',
        type: 'frequency',
        num_events: 3,
        timeframe: m(60),
        query_key: ['host'],
      }),
    ],
    { allowedLatenessMs: s(2), observedFrom: T0, onAlert: () => {} },
  );
  e.trackChanges(true);
  for (let k = 0; k < hosts; k++) e.process(ev(k, { host: `${prefix}${k}` }));
  return e;
}

/** A full capture of `e` taken whole: the ids it handed on. */
function captured(e: Engine): string[] {
  const capture = e.capture(new EntryBatch());
  const ids: string[] = [];
  const drain = () => {
    const b = capture.sink;
    for (let i = 0; i < b.rows; i++)
      ids.push(b.bytes.toString('utf16le', b.spans[3 * i], b.spans[3 * i + 1]));
    b.clear();
  };
  while (!capture.step(64)) drain();
  drain();
  capture.close();
  return ids;
}

/** Slots of `chunk` holding anything (a hole or undefined holds nothing). */
function held(chunk: string[]): number {
  let n = 0;
  for (let i = 0; i < chunk.length; i++) if (chunk[i] !== undefined) n++;
  return n;
}

describe("a capture's run arrays", () => {
  it('are handed back empty once merged, and the next capture reuses them, its own ids only', () => {
    const first = hostEngine('old-', 5_000);
    expect(captured(first)).toHaveLength(5_000);
    const kept = chunkPool.chunks();
    expect(kept.length).toBeGreaterThan(0);
    expect(chunkPool.slots).toBe(kept.reduce((n, c) => n + c.length, 0));
    for (const chunk of kept) expect(held(chunk)).toBe(0);

    // A smaller capture: every array it needs is in the pool (the first made larger ones).
    const second = hostEngine('new-', 1_000);
    const ids = captured(second);
    expect(ids).toEqual(
      Array.from({ length: 1_000 }, (_, k) => `new-${k}`).sort((a, b) => (a < b ? -1 : 1)),
    );
    const after = chunkPool.chunks();
    // The same arrays, taken and handed back: none made, none lost, all empty again.
    expect(after).toHaveLength(kept.length);
    expect(after.every((chunk) => kept.includes(chunk))).toBe(true);
    for (const chunk of after) expect(held(chunk)).toBe(0);
  });

  it('are kept up to 16 MiB of slots, past which they are dropped', () => {
    expect(chunkPool.bound * 8).toBe(16 * 2 ** 20);
    const pool = new ChunkPool(4 * 1024);
    const a = new Array<string>(1024);
    const b = new Array<string>(2048);
    const c = new Array<string>(2048);
    const handed = [a, b, c];
    pool.keep(handed);
    expect(handed).toHaveLength(0);
    // c would take the pool past its bound: dropped.
    expect(pool.slots).toBe(3 * 1024);
    expect(pool.chunks()).toHaveLength(2);
    expect(pool.take(2048)).toBe(b);
    expect(pool.take(2048)).not.toBe(c);
    expect(pool.take(1024)).toBe(a);
    expect(pool.slots).toBe(0);
    expect(pool.take(1024)).toHaveLength(1024);
  });
});
