import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Checkpoints } from '../../pipeline/checkpoint.ts';
import { writerThreads } from '../../pipeline/checkpoint-writer.ts';
import { createLogger } from '../../pipeline/logger.ts';
import { RuleCheckpoints } from '../../pipeline/rules-checkpoints.ts';
import { Engine } from '../../rules/index.ts';
import { RULES, stream } from '../rules/fleet-state.ts';
import { s, T0 } from '../rules/helpers.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const engine = () =>
  new Engine(RULES, { allowedLatenessMs: s(2), observedFrom: T0, onAlert: () => {} });

describe('rule checkpoints in drover serve', () => {
  it('restores the JSON snapshot of an earlier version once; the store takes over after', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-migrate-'));
    dirs.push(dir);
    const logger = createLogger({ level: 'silent' });
    const events = stream();
    const old = engine();
    for (const e of events.slice(0, 300)) old.process(structuredClone(e));
    const json = join(dir, 'rules-snapshot.json');
    new Checkpoints(json, logger, () => {}).write({
      engine: old.snapshot(),
      offsets: { logs: 300 },
    });

    let failures = 0;
    const first = new RuleCheckpoints(dir, logger, { onFailure: () => failures++ });
    const migrated = engine();
    const back = first.restore(migrated);
    expect(back).toMatchObject({ from: 'json', reset: [], offsets: { 'logs/0': 300 } });
    expect(migrated.snapshot()).toEqual(old.snapshot());
    for (const e of events.slice(300, 400)) migrated.process(structuredClone(e));
    expect(await first.start(migrated, { 'logs/0': 400 })).toBe(true);
    expect(existsSync(json)).toBe(false);
    first.close();

    const second = new RuleCheckpoints(dir, logger, { onFailure: () => failures++ });
    const again = engine();
    expect(second.restore(again)).toMatchObject({ from: 'store', offsets: { 'logs/0': 400 } });
    for (const e of events.slice(400)) {
      again.process(structuredClone(e));
      migrated.process(structuredClone(e));
    }
    // Keys, terms and alerts (bytes are buffer capacities, which a restore sizes anew).
    const counts = (e: Engine) => e.stats().map(({ bytes: _b, ...rest }) => rest);
    expect(counts(again)).toEqual(counts(migrated));
    second.close();
    expect(failures).toBe(0);
  });

  it('a restore, and the checkpoint at shutdown, start no writer thread; the first interval does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-restore-'));
    dirs.push(dir);
    const logger = createLogger({ level: 'silent' });
    const events = stream();
    const before = writerThreads().started;
    const first = new RuleCheckpoints(dir, logger, { onFailure: () => {} });
    const e = engine();
    expect(first.restore(e)).toBeUndefined();
    for (const x of events.slice(0, 300)) e.process(structuredClone(x));
    expect(await first.flush(e, { 'logs/0': 300 })).toBe(true);
    first.close();

    const second = new RuleCheckpoints(dir, logger, { onFailure: () => {} });
    const again = engine();
    expect(second.restore(again)).toMatchObject({ from: 'store', offsets: { 'logs/0': 300 } });
    expect(writerThreads().started - before).toBe(0);
    // The first checkpoint of an interval starts the thread and is written.
    for (const x of events.slice(300, 400)) again.process(structuredClone(x));
    expect(await second.start(again, { 'logs/0': 400 })).toBe(true);
    expect(writerThreads().started - before).toBe(1);
    second.close();
    const third = new RuleCheckpoints(dir, logger, { onFailure: () => {} });
    expect(third.restore(engine())).toMatchObject({ offsets: { 'logs/0': 400 } });
    third.close();
  });
});
