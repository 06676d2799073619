import { enableWal, openSqlite, type SqliteDatabase } from '../../ingest/storage/sqlite.ts';
import type { Alert, Explanation, StateChange } from '../../rules/index.ts';
import { type AlertHistory, type AlertRecord, type StateRecord, stateRecord } from './types.ts';

/**
 * Alerts and state changes in SQLite, in the journal's file (tables `alerts` and
 * `alert_states`, its own connection). An alert replayed after a restart keeps its id:
 * recording it again changes nothing. Each row holds one alert or change, whose sample
 * and explanation are bounded where they are made (rules/explain.ts).
 */
export class SqliteAlertHistory implements AlertHistory {
  private readonly db: SqliteDatabase;
  private readonly statements: ReturnType<SqliteAlertHistory['prepare']>;

  constructor(readonly path: string) {
    this.db = openSqlite(path);
    enableWal(this.db);
    this.db.pragma('busy_timeout = 10000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, at INTEGER NOT NULL, rule TEXT NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at);
      CREATE TABLE IF NOT EXISTS alert_states (id TEXT PRIMARY KEY, alert_id TEXT, at INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS alert_states_alert ON alert_states (alert_id, at);
      CREATE INDEX IF NOT EXISTS alert_states_at ON alert_states (at);
    `);
    this.statements = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      alert: db.prepare(
        'INSERT INTO alerts (id, at, rule, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      ),
      state: db.prepare(
        'INSERT INTO alert_states (id, alert_id, at, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      ),
      getAlert: db.prepare('SELECT doc FROM alerts WHERE id = ?'),
      states: db.prepare(
        'SELECT doc FROM alert_states WHERE alert_id = ? ORDER BY at, id LIMIT 1000',
      ),
    };
  }

  recordAlert(alert: Alert, explanation?: Explanation): void {
    const record: AlertRecord = { alert, ...(explanation && { explanation }) };
    this.statements.alert.run(alert.id, Date.parse(alert.at), alert.rule, JSON.stringify(record));
  }

  recordState(change: StateChange): void {
    this.statements.state.run(
      change.id,
      change.alert ?? null,
      Date.parse(change.at),
      JSON.stringify(stateRecord(change)),
    );
  }

  alert(id: string): AlertRecord | undefined {
    const row = this.statements.getAlert.get(id) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as AlertRecord) : undefined;
  }

  states(alertId: string): StateRecord[] {
    return (this.statements.states.all(alertId) as Array<{ doc: string }>).map(
      (r) => JSON.parse(r.doc) as StateRecord,
    );
  }

  prune(before: number): number {
    let n = 0;
    for (const table of ['alerts', 'alert_states']) {
      const del = this.db.prepare(
        `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE at < ? LIMIT 10000)`,
      );
      for (;;) {
        const c = del.run(before).changes;
        n += c;
        if (c < 10_000) break;
      }
    }
    return n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
