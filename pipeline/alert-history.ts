import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ElasticsearchAlertHistory } from './alert-history-elasticsearch.ts';
import { SqliteAlertHistory } from '../actions/history/sqlite.ts';
import type { AlertHistory } from '../actions/history/types.ts';
import type { DroverConfig } from './config.ts';

/**
 * The alert history beside the journal the configuration names (`actions.store`): the
 * SQLite file of the journal, or the alerts index family on the journal's Elasticsearch.
 */
export async function openAlertHistory(
  config: Pick<DroverConfig, 'actions' | 'stateDir'>,
  options: { readOnly?: boolean } = {},
): Promise<AlertHistory> {
  const a = config.actions ?? {
    store: 'sqlite' as const,
    path: join(config.stateDir, 'actions.db'),
  };
  if (a.store === 'sqlite') {
    mkdirSync(dirname(a.path), { recursive: true });
    return new SqliteAlertHistory(a.path);
  }
  const history = new ElasticsearchAlertHistory({ node: a.url, prefix: a.prefix });
  // A reader installs nothing: the index templates are drover serve's to install.
  if (options.readOnly) return history;
  try {
    return await history.init();
  } catch (err) {
    await history.close();
    throw new Error(
      `the alert history on Elasticsearch (${a.url}, prefix ${a.prefix}) could not be opened: ${(err as Error).message}`,
      { cause: err },
    );
  }
}
