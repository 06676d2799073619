import { parseArgs } from 'node:util';
import { SqliteAlertHistory } from '../../actions/history/sqlite.ts';
import type { AlertHistory } from '../../actions/history/types.ts';
import { openAlertHistory } from '../alert-history.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { explainAlert, formatChain, UnknownAlert } from '../explain.ts';
import { defaultStatePath, openStore } from './actions.ts';
import { EXIT_FINDINGS, EXIT_OK, UsageError } from './common.ts';
import { EXPLAIN_OPTIONS } from './options.ts';

/**
 * `drover explain ALERT_ID`: the alert's chain (pipeline/explain.ts) from the stores
 * drover serve writes — the journal and the alert history beside it — read directly, so
 * it answers whether or not a server runs.
 */
export async function explainCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: EXPLAIN_OPTIONS,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('say which alert: drover explain ALERT_ID');
  if (values.format !== 'text' && values.format !== 'json')
    throw new UsageError('--format is text or json');
  const store = await openStore(values, false);
  let history: AlertHistory;
  try {
    history = await openHistory(values);
  } catch (err) {
    await store.close();
    throw err;
  }
  try {
    const chain = await explainAlert(history, store, positionals[0]!);
    process.stdout.write(
      values.format === 'json' ? `${JSON.stringify(chain)}\n` : formatChain(chain),
    );
    return EXIT_OK;
  } catch (err) {
    if (!(err instanceof UnknownAlert)) throw err;
    process.stderr.write(`drover explain: ${err.message}\n`);
    return EXIT_FINDINGS;
  } finally {
    await history.close();
    await store.close();
  }
}

async function openHistory(values: { db?: string; config?: string }): Promise<AlertHistory> {
  if (values.config) {
    try {
      return await openAlertHistory(loadConfig(values.config), { readOnly: true });
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(err.message);
      throw err;
    }
  }
  return new SqliteAlertHistory(values.db ?? defaultStatePath('actions.db'));
}
