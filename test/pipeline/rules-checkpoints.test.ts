import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serialize } from 'node:v8';
import { openSqlite } from '../../ingest/storage/sqlite.ts';
import { Checkpoints } from '../../pipeline/checkpoint.ts';
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

  it('reads a store of format 1 (V8 values, BLOB ids) and rewrites it whole at the next checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-format1-'));
    dirs.push(dir);
    const logger = createLogger({ level: 'silent' });
    const events = stream();
    const live = engine();
    const writer = new RuleCheckpoints(dir, logger, { onFailure: () => {} });
    writer.restore(live);
    for (const e of events.slice(0, 300)) live.process(structuredClone(e));
    expect(writer.writeNow(live, { 'logs/0': 300 })).toBe(true);
    writer.close();
    // Rewritten as an earlier version stored it: each entry a V8 value under its UTF-16 id.
    const db = openSqlite(join(dir, 'rules-state.db'));
    const rows = db.prepare('SELECT rule, id, value FROM entries').all() as Array<{
      rule: string;
      id: string;
      value: string;
    }>;
    expect(rows.length).toBeGreaterThan(20);
    db.exec('DELETE FROM entries');
    const insert = db.prepare('INSERT INTO entries (rule, id, value) VALUES (?, ?, ?)');
    for (const r of rows) {
      const id = JSON.parse(r.id) as string;
      insert.run(r.rule, Buffer.from(id, 'utf16le'), serialize(JSON.parse(r.value)));
    }
    db.prepare("UPDATE meta SET value = ? WHERE name = 'format'").run(serialize(1));
    db.close();

    let failures = 0;
    const reader = new RuleCheckpoints(dir, logger, { onFailure: () => failures++ });
    const back = engine();
    expect(reader.restore(back)).toMatchObject({ from: 'store', offsets: { 'logs/0': 300 } });
    for (const e of events.slice(300, 400)) {
      back.process(structuredClone(e));
      live.process(structuredClone(e));
    }
    // Keys, terms and alerts (bytes are buffer capacities, which a restore sizes anew).
    const counts = (e: Engine) => e.stats().map(({ bytes: _b, ...rest }) => rest);
    expect(counts(back)).toEqual(counts(live));
    // The next checkpoint is whole and in format 2: every row is text now.
    expect(await reader.start(back, { 'logs/0': 400 })).toBe(true);
    expect(failures).toBe(0);
    reader.close();
    const after = openSqlite(join(dir, 'rules-state.db'), { readonly: true });
    const types = after.prepare('SELECT DISTINCT typeof(id) AS t FROM entries').all();
    after.close();
    expect(types).toEqual([{ t: 'text' }]);
    const third = new RuleCheckpoints(dir, logger, { onFailure: () => failures++ });
    const last = engine();
    third.restore(last);
    expect(counts(last)).toEqual(counts(live));
    third.close();
  });
});
