import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  createElasticsearchStore,
  type Decision,
  openActionStore,
  type RemediationStore,
} from '../../actions/index.ts';
import { toEpochMs } from '../../ingest/index.ts';
import { parseDuration } from '../../rules/index.ts';
import { loadConfig } from '../config.ts';
import { EXIT_OK, UsageError } from './common.ts';

/** Where Drover keeps its embedded state unless told otherwise. */
export function defaultStatePath(file: string): string {
  return join(process.env.DROVER_STATE_DIR ?? '.drover', file);
}

/**
 * The store `drover serve` uses: the one its configuration names (`--config`: SQLite or
 * Elasticsearch), else the SQLite file `--db` or the default state directory names.
 */
async function openStore(
  options: { db?: string; config?: string },
  create: boolean,
): Promise<RemediationStore> {
  let file = options.db;
  if (options.config) {
    if (options.db) throw new UsageError('--db and --config name the store twice: give one');
    const actions = loadConfig(options.config).actions;
    if (actions?.store === 'elasticsearch')
      return createElasticsearchStore({ node: actions.url, prefix: actions.prefix });
    file = actions?.path;
  }
  file ??= defaultStatePath('actions.db');
  if (!create && !existsSync(file))
    throw new UsageError(`no action journal at ${file} (use --db PATH or --config FILE)`);
  mkdirSync(dirname(file), { recursive: true });
  return openActionStore(file);
}

export async function actionsListCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      since: { type: 'string' },
      rule: { type: 'string' },
      format: { type: 'string', default: 'text' },
      limit: { type: 'string', default: '100' },
      db: { type: 'string' },
      config: { type: 'string' },
    },
  });
  if (values.format !== 'text' && values.format !== 'json')
    throw new UsageError('--format is text or json');
  let since: number | undefined;
  if (values.since !== undefined) {
    // An absolute time, or a duration back from now ("1h").
    since = toEpochMs(values.since);
    if (since === undefined) {
      try {
        since = Date.now() - parseDuration(values.since);
      } catch {
        throw new UsageError(`--since: "${values.since}" is neither a time nor a duration`);
      }
    }
  }
  const limit = Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1)
    throw new UsageError('--limit must be a positive integer');
  const store = await openStore(values, false);
  const entries = await store.list({ since, rule: values.rule, limit });
  await store.close();
  for (const d of entries)
    process.stdout.write(values.format === 'json' ? `${JSON.stringify(d)}\n` : `${line(d)}\n`);
  return EXIT_OK;
}

function line(d: Decision): string {
  const why = d.guard ? ` [${d.guard}] ${d.reason ?? ''}` : d.error ? ` error: ${d.error}` : '';
  return `${new Date(d.at).toISOString()}  ${d.decision.padEnd(10)} ${d.rule}  ${d.adapter}:${d.operation} ${d.target}  alert ${d.alertId}${why}`;
}

export async function killSwitchCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { db: { type: 'string' }, config: { type: 'string' } },
    allowPositionals: true,
  });
  const state = positionals[0];
  if (state !== 'on' && state !== 'off' && state !== 'status')
    throw new UsageError('say on, off or status');
  const store = await openStore(values, true);
  try {
    if (state !== 'status') await store.setKillSwitch(state === 'on');
    const on = await store.killSwitch();
    process.stdout.write(`kill switch is ${on ? 'on: no action will run' : 'off'}\n`);
  } finally {
    await store.close();
  }
  return EXIT_OK;
}
