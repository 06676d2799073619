import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { EntryBatch } from '../../pipeline/checkpoint-store.ts';
import type { Capture } from '../../rules/changes.ts';
import { IdSet } from '../../rules/id-set.ts';
import { Engine } from '../../rules/index.ts';
import { ev, m, rule, T0 } from './helpers.ts';

describe('IdSet (the ids touched between captures)', () => {
  it('holds what a Set holds under any adds and deletes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.string({ maxLength: 24, unit: 'grapheme' }))),
        (ops) => {
          const ids = new IdSet();
          const set = new Set<string>();
          for (const [add, id] of ops) {
            if (add) {
              ids.add(id);
              set.add(id);
            } else expect(ids.delete(id)).toBe(set.delete(id));
            expect(ids.size).toBe(set.size);
            expect(ids.has(id)).toBe(set.has(id));
          }
          expect([...ids.values()].sort()).toEqual([...set].sort());
        },
      ),
    );
  });

  it('is a live view: an id deleted before it is reached is not yielded', () => {
    const ids = new IdSet();
    for (let k = 0; k < 1000; k++) ids.add(`h${k}`);
    const iter = ids.values();
    const first = iter.next().value as string;
    const seen: string[] = [first];
    for (let k = 0; k < 1000; k += 2) if (`h${k}` !== first) ids.delete(`h${k}`);
    for (let next = iter.next(); !next.done; next = iter.next()) seen.push(next.value);
    expect(seen.length).toBe(ids.size + (ids.has(first) ? 0 : 1));
    expect(seen.filter((id) => Number(id.slice(1)) % 2 === 0 && id !== first)).toEqual([]);
  });

  it("a runner's changes grow a shard at a time, not one table of every id", () => {
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
      { allowedLatenessMs: 2000, observedFrom: T0, onAlert: () => {} },
    );
    e.trackChanges(true);
    const hosts = 64_000;
    for (let k = 0; k < hosts; k++) e.process(ev(k, { host: `host-${k}` }));
    const { changed } = (e as unknown as { compiled: { runner: { changed: IdSet } }[] })
      .compiled[0]!.runner;
    expect(changed.size).toBe(hosts);
    // Evenly spread, a shard holds 1,000: one growth copies about that many.
    expect(changed.largestShard()).toBeLessThan(2 * (hosts / 64));
  });

  it('a capture makes no IdSet or fingerprint per rule: the drained set is the next one', () => {
    const rules = Array.from({ length: 50 }, (_, r) =>
      rule({
        name: `freq-${r}`,
        type: 'frequency',
        num_events: 3,
        timeframe: m(60),
        query_key: ['host'],
        labels: { team: 'a' },
      }),
    );
    const e = new Engine(rules, { allowedLatenessMs: 2000, observedFrom: T0, onAlert: () => {} });
    e.trackChanges(true);
    const runners = () =>
      (e as unknown as { compiled: { runner: { changed: IdSet } }[] }).compiled.map(
        (c) => c.runner,
      );
    const drain = (c: Capture<EntryBatch>) => {
      while (!c.step(64)) c.sink.clear();
      c.close();
    };
    for (let k = 0; k < 100; k++) e.process(ev(k, { host: `h${k}` }));
    drain(e.capture(new EntryBatch())); // full
    for (let k = 0; k < 10; k++) e.process(ev(100 + k, { host: `h${k}` }));
    const pending = runners().map((r) => r.changed);
    drain(e.capture(new EntryBatch())); // incremental: takes and drains `pending`
    for (let k = 0; k < 10; k++) e.process(ev(200 + k, { host: `h${k}` }));
    const keys = vi.spyOn(Object, 'keys');
    let capture;
    try {
      capture = e.capture(new EntryBatch());
      // A rule's fingerprint (a stable stringify of its spec) is made once, not per capture.
      expect(keys.mock.calls.length).toBeLessThan(10);
    } finally {
      keys.mockRestore();
    }
    const now = runners().map((r) => r.changed);
    for (let r = 0; r < rules.length; r++) {
      expect(now[r]).toBe(pending[r]);
      expect(now[r]!.size).toBe(0);
    }
    drain(capture);
    expect(capture.entries).toBe(rules.length * 10);
  });
});
