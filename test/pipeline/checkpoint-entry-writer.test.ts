import { describe, expect, it, vi } from 'vitest';
import { EntryBatch } from '../../pipeline/checkpoint-codec.ts';
import type { EntrySink } from '../../rules/changes.ts';
import { Engine, type RuleSpec } from '../../rules/index.ts';
import type { RuleRunner, RunnerEntry } from '../../rules/runner.ts';
import { FlatlineRunner } from '../../rules/kinds/flatline.ts';
import { FrequencyRunner } from '../../rules/kinds/frequency.ts';
import { SpikeRunner } from '../../rules/kinds/spike.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const base = { labels: {}, actions: [], enabled: true };
const rules = [
  {
    ...base,
    name: 'burst',
    type: 'frequency',
    num_events: 2,
    timeframe: 60_000,
    realert: 30_000,
    query_key: ['user.id'],
  },
  {
    ...base,
    name: 'silent',
    type: 'flatline',
    threshold: 2,
    timeframe: 60_000,
    expect: [],
    forget_keys: false,
    query_key: ['host.name'],
    realert: 60_000,
  },
  {
    ...base,
    name: 'spike',
    type: 'spike',
    timeframe: 30_000,
    spike_height: 2,
    spike_type: 'both',
    threshold_cur: 0,
    threshold_ref: 0,
    alert_on_new_data: true,
    realert: 0,
    query_key: ['host.name'],
  },
  {
    ...base,
    name: 'terms',
    type: 'new_term',
    fields: ['user.id'],
    terms_window_size: 3_600_000,
    query_key: [],
    realert: 0,
  },
] as unknown as RuleSpec[];

/** Each entry both ways: `put` of `entry(id)` into one batch, `putEntry` into the other. */
class Both implements EntrySink {
  made = new EntryBatch();
  written = new EntryBatch();
  put(rule: string, id: string, entry: RunnerEntry | undefined): void {
    this.made.put(rule, id, entry);
    this.written.put(rule, id, entry);
  }
  putEntry(rule: string, id: string, runner: RuleRunner): void {
    this.made.put(rule, id, runner.entry(id));
    this.written.putEntry(rule, id, runner);
  }
}

/** `dates`: some events carry a Date (not plain data: those entries go through node:v8). */
function engine(dates = true): Engine {
  const e = new Engine(rules, {
    allowedLatenessMs: 5_000,
    observedFrom: T0,
    maxKeysPerRule: 10_000,
    onAlert: () => {},
  });
  e.trackChanges(true);
  const wide = ['a', '\u0000', '\ud800', 'é', '日本', 'x'.repeat(300)];
  for (let i = 0; i < 600; i++)
    e.process({
      '@timestamp': T0 + i * 997,
      'user.id': `u${i % 97}${wide[i % wide.length]}`,
      'host.name': `h${i % 7}`,
      message: wide[(i * 5) % wide.length],
      nested: { n: i % 3 === 0 ? -0 : i / 7, list: [1, 'two', null, true, Infinity] },
      ...(dates && i % 50 === 0 ? { when: new Date(i) } : {}),
    });
  return e;
}

describe('checkpoint entries written without making them', () => {
  it('gives the bytes of the entry encoded whole, for every entry of a full capture', () => {
    const e = engine();
    const both = new Both();
    const capture = e.capture(both);
    while (!capture.step(64));
    expect(both.made.rows).toBeGreaterThan(200);
    expect(both.written.rows).toBe(both.made.rows);
    expect(new Set(both.made.rules.slice(0, both.made.rows))).toStrictEqual(
      new Set(['burst', 'silent', 'spike', 'terms']),
    );
    expect(both.written.rules).toStrictEqual(both.made.rules);
    expect(both.written.spans.subarray(0, 3 * both.made.rows)).toStrictEqual(
      both.made.spans.subarray(0, 3 * both.made.rows),
    );
    expect(
      Buffer.compare(
        both.written.bytes.subarray(0, both.written.end),
        both.made.bytes.subarray(0, both.made.end),
      ),
    ).toBe(0);
    // Entries past plain data (a Date in a sample) went through node:v8 both ways.
    let v8 = 0;
    for (let r = 0; r < both.made.rows; r++)
      if (both.made.bytes[both.made.spans[3 * r + 1]!] === 0xff) v8++;
    expect(v8).toBeGreaterThan(0);
  });

  it('writes nothing for an id the runner does not hold, as put does for no entry', () => {
    const e = engine();
    const both = new Both();
    const capture = e.capture(both);
    while (!capture.step(64));
    const batch = new EntryBatch();
    const runner = { writeEntry: () => false, entry: () => undefined };
    batch.putEntry('burst', 'nobody', runner);
    expect(batch.spans[1]).toBe(batch.spans[2]);
  });

  it("makes no window-state object per entry for frequency, flatline and spike (a capture's allocation)", () => {
    const e = engine(false);
    const frequency = vi.spyOn(
      FrequencyRunner.prototype as unknown as { encodeKey: () => unknown },
      'encodeKey',
    );
    const flatline = vi.spyOn(
      FlatlineRunner.prototype as unknown as { encodeKey: () => unknown },
      'encodeKey',
    );
    const spike = vi.spyOn(
      SpikeRunner.prototype as unknown as { encodeKey: () => unknown },
      'encodeKey',
    );
    try {
      const capture = e.capture(new EntryBatch());
      while (!capture.step(64));
      expect(capture.entries).toBeGreaterThan(200);
      expect(frequency).not.toHaveBeenCalled();
      expect(flatline).not.toHaveBeenCalled();
      expect(spike).not.toHaveBeenCalled();
    } finally {
      spike.mockRestore();
      frequency.mockRestore();
      flatline.mockRestore();
    }
  });
});
