import Database from 'better-sqlite3';

/**
 * Durable state of remediation, in SQLite: the journal of every decision, idempotency
 * claims, the kill switch, silences and breaker notices. Cooldowns, budgets and breakers
 * are read from the journal itself, so they hold across restarts and across workers
 * sharing the file.
 */
export type DecisionKind = 'executed' | 'suppressed' | 'dry-run' | 'failed';

export interface Decision {
  /** alert id + action index: the idempotency key. */
  id: string;
  at: number;
  alertId: string;
  rule: string;
  key: Record<string, unknown>;
  adapter: string;
  operation: string;
  target: string;
  decision: DecisionKind;
  guard?: string;
  reason?: string;
  result?: Record<string, unknown>;
  error?: string;
  durationMs?: number;
}

export interface Silence {
  id: number;
  /** Exact matches on rule, labels.* or key.* fields. */
  matchers: Record<string, string>;
  until: number;
  comment: string;
}

export class ActionStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, at INTEGER NOT NULL, alert_id TEXT NOT NULL,
        rule TEXT NOT NULL, key TEXT NOT NULL, adapter TEXT NOT NULL, operation TEXT NOT NULL, target TEXT NOT NULL,
        decision TEXT NOT NULL, guard TEXT, reason TEXT, result TEXT, error TEXT, duration_ms REAL);
      CREATE INDEX IF NOT EXISTS journal_at ON journal (at);
      CREATE INDEX IF NOT EXISTS journal_target ON journal (adapter, target, decision, at);
      CREATE INDEX IF NOT EXISTS journal_rule ON journal (rule, decision, at);
      CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS silences (id INTEGER PRIMARY KEY AUTOINCREMENT, matchers TEXT NOT NULL, until INTEGER NOT NULL, comment TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS notices (key TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;
    `);
  }

  /** Claims an idempotency key; false when some worker (or an earlier replay) already has it. */
  claim(id: string, at: number): boolean {
    return (
      this.db
        .prepare('INSERT INTO claims (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING')
        .run(id, at).changes === 1
    );
  }

  /** Claims with no journal entry: the process stopped between deciding and journaling. */
  interruptedClaims(): Array<{ id: string; at: number }> {
    return this.db
      .prepare('SELECT id, at FROM claims WHERE id NOT IN (SELECT id FROM journal)')
      .all() as Array<{ id: string; at: number }>;
  }

  record(d: Decision): void {
    this.db
      .prepare(
        `INSERT INTO journal (id, at, alert_id, rule, key, adapter, operation, target, decision, guard, reason, result, error, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        d.id,
        d.at,
        d.alertId,
        d.rule,
        JSON.stringify(d.key),
        d.adapter,
        d.operation,
        d.target,
        d.decision,
        d.guard ?? null,
        d.reason ?? null,
        d.result === undefined ? null : JSON.stringify(d.result),
        d.error ?? null,
        d.durationMs ?? null,
      );
  }

  /** When an action last ran against this target (for cooldowns). */
  lastExecuted(adapter: string, target: string): number | undefined {
    const row = this.db
      .prepare(
        "SELECT MAX(at) AS at FROM journal WHERE adapter = ? AND target = ? AND decision = 'executed'",
      )
      .get(adapter, target) as { at: number | null };
    return row.at ?? undefined;
  }

  /** Actions executed since a time, for one rule or all (for budgets). */
  executedSince(since: number, rule?: string): number {
    const row = (
      rule === undefined
        ? this.db
            .prepare("SELECT COUNT(*) AS n FROM journal WHERE decision = 'executed' AND at >= ?")
            .get(since)
        : this.db
            .prepare(
              "SELECT COUNT(*) AS n FROM journal WHERE decision = 'executed' AND rule = ? AND at >= ?",
            )
            .get(rule, since)
    ) as { n: number };
    return row.n;
  }

  /** Remediations of one key of one rule since a time (for the circuit breaker). */
  executedForKey(rule: string, key: Record<string, unknown>, since: number): number {
    const row = this.db
      .prepare(
        "SELECT COUNT(*) AS n FROM journal WHERE decision = 'executed' AND operation != 'notify' AND rule = ? AND key = ? AND at >= ?",
      )
      .get(rule, JSON.stringify(key), since) as { n: number };
    return row.n;
  }

  /** Distinct targets of an adapter acted on since a time (for blast radius). */
  targetsSince(adapter: string, since: number): string[] {
    const rows = this.db
      .prepare(
        "SELECT DISTINCT target FROM journal WHERE adapter = ? AND decision = 'executed' AND operation = 'kill-and-replace' AND at >= ?",
      )
      .all(adapter, since) as Array<{ target: string }>;
    return rows.map((r) => r.target);
  }

  list(options: { since?: number; rule?: string; limit?: number } = {}): Decision[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (options.since !== undefined) {
      where.push('at >= ?');
      args.push(options.since);
    }
    if (options.rule !== undefined) {
      where.push('rule = ?');
      args.push(options.rule);
    }
    const rows = this.db
      .prepare(
        `SELECT * FROM journal ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`,
      )
      .all(...args, options.limit ?? 100) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      id: r.id as string,
      at: r.at as number,
      alertId: r.alert_id as string,
      rule: r.rule as string,
      key: JSON.parse(r.key as string) as Record<string, unknown>,
      adapter: r.adapter as string,
      operation: r.operation as string,
      target: r.target as string,
      decision: r.decision as DecisionKind,
      ...(r.guard !== null && { guard: r.guard as string }),
      ...(r.reason !== null && { reason: r.reason as string }),
      ...(r.result !== null && {
        result: JSON.parse(r.result as string) as Record<string, unknown>,
      }),
      ...(r.error !== null && { error: r.error as string }),
      ...(r.duration_ms !== null && { durationMs: r.duration_ms as number }),
    }));
  }

  killSwitch(): boolean {
    const row = this.db.prepare("SELECT value FROM settings WHERE name = 'kill_switch'").get() as
      { value: string } | undefined;
    return row?.value === 'on';
  }

  setKillSwitch(on: boolean): void {
    this.db
      .prepare(
        "INSERT INTO settings (name, value) VALUES ('kill_switch', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      )
      .run(on ? 'on' : 'off');
  }

  addSilence(matchers: Record<string, string>, until: number, comment = ''): number {
    return Number(
      this.db
        .prepare('INSERT INTO silences (matchers, until, comment) VALUES (?, ?, ?)')
        .run(JSON.stringify(matchers), until, comment).lastInsertRowid,
    );
  }

  silences(now: number): Silence[] {
    const rows = this.db.prepare('SELECT * FROM silences WHERE until > ?').all(now) as Array<{
      id: number;
      matchers: string;
      until: number;
      comment: string;
    }>;
    return rows.map((r) => ({ ...r, matchers: JSON.parse(r.matchers) as Record<string, string> }));
  }

  removeSilence(id: number): boolean {
    return this.db.prepare('DELETE FROM silences WHERE id = ?').run(id).changes === 1;
  }

  /** Records that a breaker's escalation went out; true only the first time until `until`. */
  noticeOnce(key: string, now: number, until: number): boolean {
    return this.db.transaction(() => {
      const row = this.db.prepare('SELECT until FROM notices WHERE key = ?').get(key) as
        { until: number } | undefined;
      if (row && row.until > now) return false;
      this.db
        .prepare(
          'INSERT INTO notices (key, until) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET until = excluded.until',
        )
        .run(key, until);
      return true;
    })();
  }

  close(): void {
    this.db.close();
  }
}

export function openActionStore(path: string): ActionStore {
  return new ActionStore(path);
}
