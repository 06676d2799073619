import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kafkajs } from '../../ingest/bus/kafkajs.ts';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { GLOBAL_TASK } from '../../pipeline/rules-tasks.ts';
import { killServes, type Served, stopServe, until } from '../support/drover.ts';
import { type AlertView, alertView as view, byAlert as order } from '../support/fleet-stream.ts';
import {
  actingFleet,
  alertsOf,
  backtestAlerts,
  createTopics,
  kafkaRoles,
  drained,
  globalOwner,
  send,
  settled,
} from '../support/rules-workers.ts';

// The client with Drover's fix for kafkajs's idle timer loop (a negative timeout on every
// connection: TimeoutNegativeWarning on Node.js 24), as the product's own clients have it.
const { Kafka, logLevel } = kafkajs();

/**
 * The global task added and removed by a rule reload (docs/scale-out.md, "Adding and
 * removing global rules"). Two workers run only partitioned rules; an unkeyed rule is
 * added by a reload (SIGHUP, the two workers a moment apart): it judges the events sent
 * after the reload, exactly once over the two workers, and none of those sent before
 * (the new group has no committed offsets: started from the earliest, it replayed them
 * and alerted on that old incident). Removed by a reload: the global group is left
 * empty and the rule fires no more. Added again: it starts afresh at the reload, not from
 * its group's last run. And a plain start (not a reload) with the rule in the rule set
 * seeds a group that never ran in the same way; a restart of it resumes, not seeded again.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

const RULE = 'errors-anywhere';
/** Errors over the whole fleet, with no key: spread over every partition. */
const ERRORS_ANYWHERE = `name: ${RULE}
type: frequency
num_events: 8
timeframe: 2m
realert: 1m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`;

describe.skipIf(!brokers)(
  `a reload adds and removes the global task${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('judges events from the reload on, once, and leaves its group when removed', async () => {
      const { mark, batches, prefix, dir, config } = actingFleet({
        tag: 'rr',
        name: 'global-reload',
        acting: [],
        bus: 'sessionTimeout: 6s',
        // host.name follows the partitioning here: the fleet's rules are all partitioned.
        rules: 'idleTimeout: 5s, partitionFields: [service.name, host.name]',
        snapshotEvery: '2s',
      });
      // Four parts: before the rule, with it, after its removal, with it again.
      const cuts = [0, 0.3, 0.55, 0.8, 1].map((f) => Math.floor(batches.length * f));
      const parts = [0, 1, 2, 3].map((i) => batches.slice(cuts[i], cuts[i + 1]));
      const only = join(dir, 'global-only');
      mkdirSync(only);
      writeFileSync(join(only, `${RULE}.yaml`), ERRORS_ANYWHERE);
      const expectedOf = (i: number): AlertView[] => {
        const data = join(dir, `part-${i}.ndjson`);
        writeFileSync(data, `${parts[i]!.flat().join('\n')}\n`);
        const r = backtestAlerts(only, data);
        expect(r.stderr).toMatch(/0 bad lines, 0 late events/);
        return r.alerts;
      };
      const expected = [0, 1, 2, 3].map(expectedOf);
      // Every part holds an incident of the rule: the ones sent without it must not fire.
      for (const e of expected) expect(e.length).toBeGreaterThan(0);
      // A part's event times; its alerts are compared with the backtest's up to a minute
      // before its last event (past the lateness: the events drive the watermark there).
      const span = (i: number) => {
        const times = parts[i]!.flat().map(timeOf);
        return { from: Math.min(...times), to: Math.max(...times) };
      };
      const within = (xs: AlertView[], i: number, slack = 0) =>
        xs.filter((x) => {
          const at = Date.parse(x.at);
          return at >= span(i).from && at <= span(i).to - slack;
        });
      await createTopics(brokers!, prefix);

      const { worker, ingest: startIngest } = kafkaRoles(config, dir, brokers!);
      const ingest = await startIngest();
      const workers = await Promise.all([worker(), worker()]);
      await settled(workers);
      const admin = new Kafka({ brokers: brokers!.split(','), logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const group = `${prefix}rules-global`;
      const members = async () => (await admin.describeGroups([group])).groups[0]!;
      try {
        expect((await members()).members).toHaveLength(0);
        mark('two workers with partitioned rules only');

        await send(ingest.url, parts[0]!);
        await drained(workers);
        mark('part 1 processed, without the rule');

        const rule = join(dir, 'rules', `${RULE}.yaml`);
        /** Reloads both workers a moment apart, each as its operator would: SIGHUP. */
        const reloadAll = async () => {
          const before = workers.map((w) => reloads(w));
          for (const w of workers) {
            w.child.kill('SIGHUP');
            await new Promise((r) => setTimeout(r, 300));
          }
          await until(
            'both workers to reload',
            () => workers.every((w, i) => reloads(w) > before[i]!),
            30_000,
          );
        };
        /** Both workers in the global group, one holding its task. */
        const joined = async () => {
          await until(
            'both workers in the global group',
            async () => {
              const g = await members();
              return g.state === 'Stable' && g.members.length === 2;
            },
            90_000,
          );
          return globalOwner(workers);
        };
        const fired = async () => {
          const all = (await alertsOf(workers)).filter((x) => x.rule === RULE);
          // Exactly once over the two workers, from the global task.
          expect(new Set(all.map((x) => x.id)).size).toBe(all.length);
          expect(all.filter((x) => x.task?.id !== GLOBAL_TASK)).toEqual([]);
          return all.map(view).sort(order);
        };

        writeFileSync(rule, ERRORS_ANYWHERE);
        await reloadAll();
        await joined();
        mark('the rule added by a reload: both workers joined the global group');
        await send(ingest.url, parts[1]!);
        await drained(workers);
        // The incident of part 1, sent before the reload, does not fire; part 2's does.
        const added = await fired();
        expect(added.filter((x) => within([x], 1).length === 0)).toEqual([]);
        expect(within(added, 1, 60_000)).toEqual(within(expected[1]!, 1, 60_000));
        expect(within(added, 1, 60_000).length).toBeGreaterThan(0);
        expect(added).toHaveLength(expected[1]!.length);
        mark(`part 2 processed: ${added.length} alerts, as the backtest of it`);

        rmSync(rule);
        await reloadAll();
        await until(
          'the global group to be empty',
          async () => (await members()).members.length === 0,
          60_000,
        );
        mark('the rule removed by a reload: the global group is empty');
        await send(ingest.url, parts[2]!);
        await drained(workers);
        expect(await fired()).toEqual(added);
        for (const w of workers) {
          expect(await globalAssigned(w)).toBe(0);
          // Its group's lag is not left at its last reading.
          const text = await (await fetch(`${w.url}/metrics`)).text();
          expect(text).not.toContain(`group="${group}"`);
        }
        mark('part 3 processed: no alert of the removed rule');

        writeFileSync(rule, ERRORS_ANYWHERE);
        await reloadAll();
        await joined();
        mark('the rule added again');
        await send(ingest.url, parts[3]!);
        await drained(workers);
        // Afresh from the reload: nothing of part 3 (after its group's last run) fires.
        const now = await fired();
        expect(now.slice(0, added.length)).toEqual(added);
        const again = now.slice(added.length);
        expect(again.filter((x) => within([x], 3).length === 0)).toEqual([]);
        expect(within(again, 3, 60_000)).toEqual(within(expected[3]!, 3, 60_000));
        // As many as the backtest of the part (its one alert comes within the last minute,
        // where the live merge's event-time order and the file's order can differ by a
        // few seconds).
        expect(again).toHaveLength(expected[3]!.length);
        mark(`part 4 processed: ${again.length} alerts of it, no more`);
      } finally {
        await admin.disconnect();
      }
      await Promise.all([...workers, ingest].map((w) => stopServe(w)));
    }, 240_000);

    it('a plain start with a global rule seeds a new group at the log ends; a restart resumes it', async () => {
      const { mark, batches, prefix, dir, config } = actingFleet({
        tag: 'rs',
        name: 'global-start',
        acting: [],
        bus: 'sessionTimeout: 6s',
        rules: 'idleTimeout: 5s, partitionFields: [service.name, host.name]',
        snapshotEvery: '2s',
      });
      const cuts = [0, 0.3, 0.55, 0.8, 1].map((f) => Math.floor(batches.length * f));
      const parts = [0, 1, 2, 3].map((i) => batches.slice(cuts[i], cuts[i + 1]));
      const only = join(dir, 'global-only');
      mkdirSync(only);
      writeFileSync(join(only, `${RULE}.yaml`), ERRORS_ANYWHERE);
      const expectedOf = (from: number, to = from): AlertView[] => {
        const data = join(dir, `parts-${from}-${to}.ndjson`);
        writeFileSync(
          data,
          `${parts
            .slice(from, to + 1)
            .flat()
            .flat()
            .join('\n')}\n`,
        );
        const r = backtestAlerts(only, data);
        expect(r.stderr).toMatch(/0 bad lines, 0 late events/);
        return r.alerts;
      };
      const expected = [0, 1, 2, 3].map((i) => expectedOf(i));
      for (const e of expected) expect(e.length).toBeGreaterThan(0);
      // The global task runs from part 2 on, through the restart.
      const fromStart = expectedOf(1, 3);
      const span = (i: number) => {
        const times = parts[i]!.flat().map(timeOf);
        return { from: Math.min(...times), to: Math.max(...times) };
      };
      const within = (xs: AlertView[], i: number, slack = 0, last = i) =>
        xs.filter((x) => {
          const at = Date.parse(x.at);
          return at >= span(i).from && at <= span(last).to - slack;
        });
      await createTopics(brokers!, prefix);
      // The rule is in the rule set from the first start.
      writeFileSync(join(dir, 'rules', `${RULE}.yaml`), ERRORS_ANYWHERE);
      const { worker, ingest: startIngest } = kafkaRoles(config, dir, brokers!);
      const ingest = await startIngest();
      const admin = new Kafka({ brokers: brokers!.split(','), logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const written = async () => {
        let n = 0;
        for (const t of ['logs', 'metrics'])
          for (const o of await admin.fetchTopicOffsets(`${prefix}${t}`)) n += Number(o.high);
        return n;
      };
      const fired = async (ws: Served[]) =>
        (await alertsOf(ws))
          .filter((x) => x.rule === RULE)
          .map(view)
          .sort(order);
      const seeded = (w: Served) => w.log().includes('rules global task seeded at the log ends');
      try {
        // Part 1 is in the log before any rules worker ever ran.
        await send(ingest.url, parts[0]!);
        await until('part 1 in the log', async () => (await written()) > 0, 30_000);
        const first = await worker();
        await settled([first]);
        await globalOwner([first]);
        mark('a worker started with the rule');
        await send(ingest.url, parts[1]!);
        await drained([first]);
        // Part 1's incident, in the log before the start, does not fire; part 2's does.
        const started = await fired([first]);
        expect(started.filter((x) => within([x], 1).length === 0)).toEqual([]);
        expect(within(started, 1, 60_000)).toEqual(within(expected[1]!, 1, 60_000));
        expect(within(started, 1, 60_000).length).toBeGreaterThan(0);
        expect(seeded(first)).toBe(true);
        mark(`part 2 processed: ${started.length} alerts, as the backtest of it`);

        // A restart (fresh state directory: from the changelog) is not seeded again: the
        // events sent while it was down are judged.
        await stopServe(first);
        await send(ingest.url, [...parts[2]!, ...parts[3]!]);
        const second = await worker();
        await settled([second]);
        await globalOwner([second]);
        await drained([second]);
        expect(seeded(second)).toBe(false);
        const resumed = await fired([second]);
        // As the backtest of parts 2 to 4 gives, over parts 3 and 4 (the restored task
        // replays from its last snapshot: alerts of part 2 may come again, same ids).
        expect(within(resumed, 2, 60_000, 3)).toEqual(within(fromStart, 2, 60_000, 3));
        expect(within(resumed, 2, 60_000, 3).length).toBeGreaterThan(0);
        mark(`restarted: parts 3 and 4, sent while down, judged (${resumed.length} alerts)`);
        await stopServe(second);
      } finally {
        await admin.disconnect();
      }
      await stopServe(ingest);
    }, 240_000);
  },
);

/** An NDJSON line's event time (ECS `@timestamp` or pino's `time`), in ms. */
function timeOf(line: string): number {
  const e = JSON.parse(line) as { '@timestamp'?: string | number; time?: number };
  const t = e['@timestamp'] ?? e.time;
  return typeof t === 'number' ? t : Date.parse(t ?? '');
}

/** How many reloads a worker has logged. */
function reloads(w: Served): number {
  return w
    .log()
    .split('\n')
    .filter((l) => l.includes('"msg":"rules reloaded"')).length;
}

async function globalAssigned(w: Served): Promise<number> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  return Number(/^drover_rules_global_task_assigned (\S+)/m.exec(text)?.[1] ?? 0);
}
