import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openActionStore } from '../../actions/index.ts';
import { GLOBAL_TASK } from '../../pipeline/rules-tasks.ts';
import { killServes, stopServe, until } from '../support/drover.ts';
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
  TASKS,
  type WorkerAlert,
} from '../support/rules-workers.ts';

/**
 * Keys that do not follow the partitioning (docs/scale-out.md): rules keyed by a field
 * that every service's events carry (`log.level`), or by nothing, and the fleet's
 * `host.name` rules (by default only `service.name` follows the partitioning) run in the
 * global task, one member of the `<prefix>rules-global` group. Two workers on the six
 * partitions give what `drover backtest` gives, alert for alert; before the global task,
 * each worker counted its share of those rules' events and fired fewer. Then the global
 * task's owner is killed mid-stream: the standby takes the task over from the changelog
 * once the owner's session times out, and no alert is lost, none is doubled, no action
 * runs twice.
 */
const brokers = inject('kafkaBrokers');
const reason = inject('serverSkipReasons').kafka;

afterEach(killServes);

/** Errors over the whole fleet, with no key: spread over every partition. */
const ERRORS_ANYWHERE = `name: errors-anywhere
type: frequency
num_events: 8
timeframe: 2m
realert: 1m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`;
/** Keyed by a field every service's events carry. */
const ERRORS_BY_LEVEL = `name: errors-by-level
type: frequency
query_key: log.level
num_events: 9
timeframe: 3m
realert: 2m
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
`;
/** An NDJSON line's event time (ECS `@timestamp` or pino's `time`), in ms. */
function timeOf(line: string): number {
  const e = JSON.parse(line) as { '@timestamp'?: string | number; time?: number };
  const t = e['@timestamp'] ?? e.time;
  return typeof t === 'number' ? t : Date.parse(t ?? '');
}

describe.skipIf(!brokers)(
  `rules whose key does not follow the partitioning${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('two workers equal the backtest; the global task survives its owner killed', async () => {
      const { mark, batches, lines, prefix, dir, data, acted, journal, config } = actingFleet({
        tag: 'rg',
        name: 'global',
        acting: ['rules/host-error-burst.yaml'],
        extra: {
          'rules/errors-anywhere.yaml': ERRORS_ANYWHERE,
          'rules/errors-by-level.yaml': ERRORS_BY_LEVEL,
        },
        bus: 'sessionTimeout: 6s',
        rules: 'idleTimeout: 5s',
        snapshotEvery: '2s',
      });
      const backtest = backtestAlerts(join(dir, 'rules'), data);
      expect(backtest.stderr).toMatch(/0 bad lines, 0 late events/);
      const expected = backtest.alerts;
      const globalRules = ['errors-anywhere', 'errors-by-level'];
      for (const rule of globalRules)
        expect(expected.filter((x) => x.rule === rule).length).toBeGreaterThan(2);
      await createTopics(brokers!, prefix);

      const { worker, ingest: startIngest } = kafkaRoles(config, dir, brokers!);
      const ingest = await startIngest();
      const workers = await Promise.all([worker(), worker()]);
      await settled(workers);
      // The global task's group settles on its own: its owner known before anything is
      // sent (a standby's lag is 0, so drained() alone would not wait for it).
      await globalOwner(workers);
      mark('two workers share the tasks, one holds the global task');

      const part = Math.floor((batches.length * 2) / 3);
      await send(ingest.url, batches.slice(0, part));
      await drained(workers);
      mark('two thirds processed');
      // Alerts up to well behind the last event sent (its event time less 3 minutes, past
      // the lateness and the shippers' disorder) depend on nothing sent later: both sides
      // compared there. Each worker counting its share of the errors fired fewer.
      const sentUntil = Math.max(...batches.slice(0, part).flat().map(timeOf));
      const cut = new Date(sentUntil - 3 * 60_000).toISOString();
      const upTo = (xs: AlertView[], at: string) =>
        xs
          .filter((x) => x.at <= at)
          .map(view)
          .sort(order);
      const first = await alertsOf(workers);
      expect(upTo(first, cut)).toEqual(upTo(expected, cut));
      expect(upTo(first, cut).filter((x) => globalRules.includes(x.rule)).length).toBeGreaterThan(
        2,
      );
      mark(`the first alerts equal the backtest's up to ${cut}`);

      // The global task's owner killed; the other stands by, and takes the task once the
      // owner's session (6 s) has timed out, from the changelog.
      const owner = await globalOwner(workers);
      const standby = workers.find((w) => w !== owner)!;
      const fromOwner = await alertsOf([owner]);
      owner.child.kill('SIGKILL');
      await new Promise((r) => owner.child.once('exit', r));
      mark('the global task owner killed');
      await send(ingest.url, batches.slice(part));
      expect(await globalOwner([standby])).toBe(standby);
      mark('the standby holds the global task');
      await until(
        'the standby to hold every partition task',
        async () => {
          const text = await (await fetch(`${standby.url}/metrics`)).text();
          return Number(/^drover_rules_tasks_assigned (\S+)/m.exec(text)?.[1]) === TASKS;
        },
        90_000,
      );
      await drained([standby]);
      mark('the rest processed');
      // From the changelog (snapshots every 2 s), not from the start.
      expect(
        standby
          .log()
          .split('\n')
          .some(
            (l) =>
              l.includes('"msg":"rules task restored"') &&
              l.includes(`"group":"${prefix}rules-global"`) &&
              l.includes(`"task":${GLOBAL_TASK}`),
          ),
      ).toBe(true);

      // Alerts up to a minute before the last event (past the lateness: the events drive
      // the watermark there, with no clock).
      const end = new Date(Math.max(...lines.map(timeOf)) - 60_000).toISOString();
      const all: WorkerAlert[] = [...fromOwner, ...(await alertsOf([standby]))];
      const byId = new Map(all.map((x) => [x.id, x]));
      const live = [...byId.values()];
      console.log(
        `${lines.length} events, ${expected.length} alerts in the data; the owner fired ${fromOwner.length} before the kill; alerts seen ${all.length}, distinct ${byId.size}`,
      );
      expect(upTo(live, end)).toEqual(upTo(expected, end));
      // The service.name rules' alerts come from partition tasks, every other's from the
      // global task.
      const partitioned = ['service-error-spike', 'new-stack-trace'];
      const misplaced = live.filter(
        (x) => (x.task?.id === GLOBAL_TASK) === partitioned.includes(x.rule) || !x.task,
      );
      expect(misplaced.map((x) => `${x.rule} ${JSON.stringify(x.task)}`)).toEqual([]);

      await stopServe(standby);
      await stopServe(ingest);
      const store = openActionStore(journal);
      const decisions = store.list({ limit: 10_000 });
      store.close();
      const executed = decisions.filter((d) => d.decision === 'executed');
      expect(executed.length).toBeGreaterThan(0);
      // Each action once: one executed entry per id, and as many runs as entries.
      expect(new Set(executed.map((d) => d.id)).size).toBe(executed.length);
      expect(existsSync(acted)).toBe(true);
      expect(readFileSync(acted, 'utf8').trim().split('\n')).toHaveLength(executed.length);
      mark('done');
    }, 240_000);
  },
);
