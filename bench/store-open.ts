/**
 * `npm run bench -- store-open [--keys 10000] [--rounds 10] [--json]`: what opening the
 * rules' checkpoint store (pipeline/checkpoint-store.ts) holds the event loop for, per
 * round on one store file of `keys` keys: the open itself (`new CheckpointStore`, which
 * waited for its writer thread to load and open its connection before that thread was
 * started by the first write), the restore (read and restoreChanges, on the loop by
 * design), the threads the open and restore left running (the process's tasks, Linux),
 * and the wall time from the open to the first checkpoint written (1% of the keys
 * changed), which now includes the thread's start. Medians and maxima over the rounds.
 * `--before PATH`: the same rounds, alternated in this process, with the store of the
 * checkout at PATH (its pipeline/checkpoint-store.ts), side by side.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as own from '../pipeline/checkpoint-store.ts';
import { Engine, type RuleSpec } from '../rules/index.ts';

const T0 = Date.parse('2024-01-01T00:00:00Z');

function newEngine(): Engine {
  const rules = [
    {
      name: 'freq',
      type: 'frequency',
      num_events: 3,
      timeframe: 3_600_000,
      query_key: ['host'],
      realert: 0,
      labels: {},
      actions: [],
      enabled: true,
    },
  ] as unknown as RuleSpec[];
  return new Engine(rules, { allowedLatenessMs: 2_000, observedFrom: T0, onAlert: () => {} });
}

const round = (n: number) => Math.round(n * 100) / 100;
const tasks = () => readdirSync('/proc/self/task').length;

function stats(xs: number[]): { median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: round(s[Math.floor(s.length / 2)]!), max: round(s[s.length - 1]!) };
}

type Store = typeof own;

interface Side {
  name: string;
  store: Store;
  open: number[];
  restore: number[];
  firstWrite: number[];
  threadsLeft: number;
}

/** One round on `side`: open, restore, the first checkpoint, close. */
async function once(side: Side, path: string, keys: number): Promise<void> {
  const { CheckpointStore, EntryBatch } = side.store;
  const before = tasks();
  const began = performance.now();
  const store = new CheckpointStore(path);
  side.open.push(performance.now() - began);
  const t = performance.now();
  const back = newEngine();
  back.restoreChanges(store.read()!);
  side.restore.push(performance.now() - t);
  side.threadsLeft = Math.max(side.threadsLeft, tasks() - before);
  const changed = Math.max(1, Math.floor(keys / 100));
  for (let j = 0; j < changed; j++)
    back.process({ '@timestamp': T0 + keys + j, host: `h${(j * 7919) % keys}` });
  await store.write(back.capture(new EntryBatch()), { 'logs/0': keys + changed });
  side.firstWrite.push(performance.now() - began);
  store.close();
  // The closed store's thread ends before the next round counts tasks.
  await new Promise((resolve) => setTimeout(resolve, 300));
}

export async function storeOpen(args: string[]): Promise<number> {
  const arg = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const keys = Number(arg('--keys') ?? 10_000);
  const rounds = Number(arg('--rounds') ?? 10);
  const beforePath = arg('--before');
  const side = (name: string, store: Store): Side => ({
    name,
    store,
    open: [],
    restore: [],
    firstWrite: [],
    threadsLeft: 0,
  });
  const sides = [side('after', own)];
  if (beforePath !== undefined) {
    const url = pathToFileURL(resolve(beforePath, 'pipeline', 'checkpoint-store.ts')).href;
    sides.unshift(side('before', (await import(url)) as Store));
  }
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-open-'));
  const path = join(dir, 'rules-state.db');
  try {
    const e = newEngine();
    e.trackChanges(true);
    for (let k = 0; k < keys; k++) e.process({ '@timestamp': T0 + k, host: `h${k}` });
    const seed = new own.CheckpointStore(path);
    seed.writeNow(e.capture(new own.EntryBatch()), { 'logs/0': keys });
    seed.close();
    for (let r = 0; r < rounds; r++)
      for (const s of r % 2 === 0 ? sides : [...sides].reverse()) await once(s, path, keys);
    const results = sides.map((s) => ({
      side: s.name,
      keys,
      rounds,
      open_ms: stats(s.open),
      restore_ms: stats(s.restore),
      threads_after_restore_max: s.threadsLeft,
      open_to_first_checkpoint_ms: stats(s.firstWrite),
    }));
    if (args.includes('--json')) process.stdout.write(`${JSON.stringify(results)}\n`);
    else
      for (const r of results)
        process.stdout.write(
          `${r.side}: store open (${keys} keys, ${rounds} rounds): open ${r.open_ms.median} ms median, ${r.open_ms.max} max; restore ${r.restore_ms.median} / ${r.restore_ms.max}; threads left by open+restore ${r.threads_after_restore_max}; open to first checkpoint ${r.open_to_first_checkpoint_ms.median} / ${r.open_to_first_checkpoint_ms.max}\n`,
        );
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
