import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  silenceCommand as addSilence,
  createElasticsearchStore,
  type Decision,
  killSwitchCommand as setKillSwitch,
  openActionStore,
  type RemediationStore,
  type Silence,
  SilenceError,
} from '../../actions/index.ts';
import { toEpochMs } from '../../ingest/model/index.ts';
import { parseDuration } from '../../rules/index.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { adminClient, callAdmin } from './admin-client.ts';
import { EXIT_FINDINGS, EXIT_OK, UsageError } from './common.ts';
import { terminalSafe } from '../terminal-text.ts';
import { ACTIONS_LIST_OPTIONS, KILL_SWITCH_OPTIONS, SILENCE_OPTIONS } from './options.ts';

/** Where Drover keeps its embedded state unless told otherwise. */
export function defaultStatePath(file: string): string {
  return join(process.env.DROVER_STATE_DIR ?? '.drover', file);
}

/**
 * The store `drover serve` uses: the one its configuration names (`--config`: SQLite or
 * Elasticsearch), else the SQLite file `--db` or the default state directory names.
 */
export async function openStore(
  options: { db?: string; config?: string },
  create: boolean,
): Promise<RemediationStore> {
  let file = options.db;
  if (options.config) {
    if (options.db) throw new UsageError('--db and --config name the store twice: give one');
    let actions: ReturnType<typeof loadConfig>['actions'];
    try {
      actions = loadConfig(options.config).actions;
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(err.message);
      throw err;
    }
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
    options: ACTIONS_LIST_OPTIONS,
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
  // Targets, reasons and errors may carry event values: escaped for the terminal.
  return terminalSafe(
    `${new Date(d.at).toISOString()}  ${d.decision.padEnd(10)} ${d.rule}  ${d.adapter}:${d.operation} ${d.target}  alert ${d.alertId}${why}`,
  );
}

export async function killSwitchCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: KILL_SWITCH_OPTIONS,
    allowPositionals: true,
  });
  const state = positionals[0];
  if (positionals.length !== 1 || (state !== 'on' && state !== 'off' && state !== 'status'))
    throw new UsageError('say on, off or status');
  const store = await openStore(values, true);
  try {
    process.stdout.write(`${(await setKillSwitch(store, positionals)).message}\n`);
  } finally {
    await store.close();
  }
  return EXIT_OK;
}

/**
 * `drover actions silence add MATCHER... --for D | --until T`, `list`, `remove ID`.
 *
 * Through the running `drover serve`'s control API with the admin token (as `drover rules
 * reload`): the server authorizes the call and its view of silences is the one changed.
 * `--db PATH` is the offline mode: it writes that SQLite journal directly, for a server
 * that is not running (whoever may write the file may already do anything to it).
 */
export async function silenceCliCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: SILENCE_OPTIONS,
    allowPositionals: true,
  });
  const [verb, ...rest] = positionals;
  if (verb !== 'add' && verb !== 'list' && verb !== 'remove')
    throw new UsageError('say add, list or remove');
  if (values.format !== 'text' && values.format !== 'json')
    throw new UsageError('--format is text or json');
  let forMs: number | undefined;
  let until: number | undefined;
  if (verb === 'add') {
    if (rest.length === 0) throw new UsageError('add needs at least one matcher: field=value');
    if ((values.for === undefined) === (values.until === undefined))
      throw new UsageError('add needs one of --for DURATION or --until TIME');
    if (values.for !== undefined) {
      try {
        forMs = parseDuration(values.for);
      } catch (err) {
        throw new UsageError(`--for: ${(err as Error).message}`);
      }
    } else {
      until = toEpochMs(values.until);
      if (until === undefined) throw new UsageError(`--until: "${values.until}" is not a time`);
    }
  }
  if (verb === 'remove' && rest.length !== 1) throw new UsageError('remove takes one silence id');
  const offline = values.db !== undefined;
  if (offline && (values.url ?? values.config ?? values['state-dir']) !== undefined)
    throw new UsageError(
      '--db writes the journal directly: it takes no --url, --config or --state-dir',
    );
  const silences = offline
    ? await offlineSilences(values.db!, verb === 'add')
    : onlineSilences(values);
  try {
    if (verb === 'add') {
      try {
        const added = await addSilence(silences, {
          matchers: rest,
          forMs,
          until,
          comment: values.comment,
          expireOnResolve: values['expire-on-resolve'],
        });
        process.stdout.write(
          values.format === 'json' ? `${JSON.stringify(added)}\n` : `${added.message}\n`,
        );
      } catch (err) {
        if (err instanceof SilenceError) throw new UsageError(err.message);
        throw err;
      }
    } else if (verb === 'list') {
      for (const silence of await silences.silences(Date.now()))
        process.stdout.write(
          values.format === 'json'
            ? `${JSON.stringify(silence)}\n`
            : `${terminalSafe(
                `${silence.id}  until ${new Date(silence.until).toISOString()}  ${Object.entries(
                  silence.matchers,
                )
                  .map(([k, v]) => `${k}=${v}`)
                  .join(' ')}${silence.comment ? `  # ${silence.comment}` : ''}`,
              )}\n`,
        );
    } else {
      // SQLite's ids are numbers, Elasticsearch's are strings: each store reads its own.
      if (!(await silences.removeSilence(rest[0]!))) {
        process.stderr.write(`no silence ${rest[0]} in force\n`);
        return EXIT_FINDINGS;
      }
      process.stdout.write(`silence ${rest[0]} removed\n`);
    }
  } catch (err) {
    if (err instanceof AdminRefused) {
      process.stderr.write(`${err.message}\n`);
      return EXIT_FINDINGS;
    }
    throw err;
  } finally {
    await silences.close();
  }
  return EXIT_OK;
}

type SilenceStore = Pick<RemediationStore, 'addSilence' | 'silences' | 'removeSilence' | 'close'>;

async function offlineSilences(db: string, create: boolean): Promise<SilenceStore> {
  return openStore({ db }, create);
}

/** drover serve answered an admin call with an error: its status and message. */
class AdminRefused extends Error {}

/** The silences of a running drover serve, through its control API and admin token. */
function onlineSilences(values: {
  url?: string;
  config?: string;
  'state-dir'?: string;
}): SilenceStore {
  let client: { url: string; token: string };
  try {
    client = adminClient({ url: values.url, config: values.config, stateDir: values['state-dir'] });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  const refused = (status: number, body: Record<string, unknown>) =>
    new AdminRefused(`drover serve answered ${status}: ${String(body.error ?? '')}`);
  return {
    async addSilence(matchers, until, comment, options) {
      const { status, body } = await callAdmin(client, 'POST', '/v1/silences', {
        matchers,
        until: new Date(until).toISOString(),
        ...(comment && { comment }),
        ...(options?.expireOnResolve && { expire_on_resolve: true }),
      });
      if (status !== 201) throw refused(status, body);
      return body.id as number | string;
    },
    async silences() {
      const { status, body } = await callAdmin(client, 'GET', '/v1/silences');
      if (status !== 200) throw refused(status, body);
      return body.silences as Silence[];
    },
    async removeSilence(id) {
      const path = `/v1/silences/${encodeURIComponent(String(id))}`;
      const { status, body } = await callAdmin(client, 'DELETE', path);
      if (status === 404) return false;
      if (status !== 204) throw refused(status, body);
      return true;
    },
    async close() {},
  };
}
