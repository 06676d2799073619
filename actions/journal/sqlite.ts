import { enableWal, openSqlite, type SqliteDatabase } from '../../ingest/storage/sqlite.ts';
import type { Alert } from '../../rules/index.ts';
import type {
  Attempt,
  Inhibitor,
  LedgerCounts,
  LedgerQuery,
  Silence,
  Suppression,
} from '../guards/index.ts';
import { validateMatchers } from '../guards/index.ts';
import type {
  ClaimFence,
  Decision,
  DecisionKind,
  ListOptions,
  RemediationStore,
  Verification,
} from './types.ts';
import { MAX_JOURNALED_IDS } from './types.ts';

/**
 * The embedded store: one SQLite file (WAL, synchronous=FULL), shared safely by several
 * workers. Claims are `INSERT … ON CONFLICT DO NOTHING`; reservations run in a
 * `BEGIN IMMEDIATE` transaction, so the check and the append are one step even across
 * processes.
 */
export class ActionStore implements RemediationStore {
  private readonly db: SqliteDatabase;
  private readonly statements: ReturnType<ActionStore['prepare']>;

  constructor(readonly path: string) {
    this.db = openSqlite(path);
    // The wait for a lock first: another process may be switching the new file to WAL.
    this.db.pragma('busy_timeout = 10000');
    enableWal(this.db);
    this.db.pragma('synchronous = FULL');
    // Processes sharing the file (rules workers on one host) may open it at once: the
    // schema and its migrations are one write transaction, so a second opener waits and
    // then finds the columns the first added, instead of adding them twice.
    this.db.exec('BEGIN IMMEDIATE');
    try {
      this.migrate();
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
    this.statements = this.prepare();
  }

  private migrate(): void {
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, at INTEGER NOT NULL, alert_id TEXT NOT NULL,
        rule TEXT NOT NULL, key TEXT NOT NULL, adapter TEXT NOT NULL, operation TEXT NOT NULL, target TEXT NOT NULL,
        decision TEXT NOT NULL, guard TEXT, reason TEXT, result TEXT, error TEXT, duration_ms REAL);
      CREATE INDEX IF NOT EXISTS journal_at ON journal (at);
      CREATE INDEX IF NOT EXISTS journal_rule ON journal (rule, at);
      CREATE INDEX IF NOT EXISTS journal_id ON journal (id);
      CREATE INDEX IF NOT EXISTS journal_alert ON journal (alert_id, at);
      CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS task_generations (task INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS attempts (
        id TEXT PRIMARY KEY, at INTEGER NOT NULL, rule TEXT NOT NULL, key_id TEXT NOT NULL,
        adapter TEXT NOT NULL, target TEXT NOT NULL, operation TEXT NOT NULL, grp TEXT,
        shadow INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS attempts_target ON attempts (adapter, target, shadow, at);
      CREATE INDEX IF NOT EXISTS attempts_rule ON attempts (rule, shadow, at);
      CREATE INDEX IF NOT EXISTS attempts_key ON attempts (key_id, shadow, at);
      CREATE INDEX IF NOT EXISTS attempts_at ON attempts (shadow, at);
      CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS silences (id INTEGER PRIMARY KEY AUTOINCREMENT, matchers TEXT NOT NULL, until INTEGER NOT NULL, comment TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS notices (key TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS inhibitions (service TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS inhibitors (service TEXT NOT NULL, firing TEXT NOT NULL, alert_id TEXT NOT NULL, until INTEGER NOT NULL, PRIMARY KEY (service, firing)) WITHOUT ROWID;
    `);
    // Journals written before params, the alert and the guards were kept gain the columns.
    const columns = new Set(
      (this.db.prepare('PRAGMA table_info(journal)').all() as Array<{ name: string }>).map(
        (c) => c.name,
      ),
    );
    // …and before verifications: the outcome as a column (pending ones are looked up at
    // start), the whole verification as JSON; and before guard traces and group ids.
    for (const c of ['params', 'alert', 'verification', 'verify_outcome', 'guards', 'notification'])
      if (!columns.has(c)) this.db.exec(`ALTER TABLE journal ADD COLUMN ${c} TEXT`);
    this.db.exec(
      "CREATE INDEX IF NOT EXISTS journal_verify_pending ON journal (at) WHERE verify_outcome = 'pending'",
    );
    const silenceColumns = this.db.prepare('PRAGMA table_info(silences)').all() as Array<{
      name: string;
    }>;
    if (!silenceColumns.some((c) => c.name === 'expire_on_resolve'))
      this.db.exec('ALTER TABLE silences ADD COLUMN expire_on_resolve INTEGER NOT NULL DEFAULT 0');
  }

  private prepare() {
    const db = this.db;
    return {
      claim: db.prepare('INSERT INTO claims (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING'),
      taskGeneration: db.prepare('SELECT generation FROM task_generations WHERE task = ?'),
      seeGeneration: db.prepare(
        'INSERT INTO task_generations (task, generation) VALUES (?, ?) ON CONFLICT (task) DO UPDATE SET generation = MAX(generation, excluded.generation)',
      ),
      record: db.prepare(
        `INSERT INTO journal (id, at, alert_id, rule, key, adapter, operation, target, params, decision, guard, reason, result, error, duration_ms, alert, verification, verify_outcome, guards, notification)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      settleVerification: db.prepare(
        "UPDATE journal SET verification = ?, verify_outcome = ? WHERE id = ? AND verify_outcome = 'pending'",
      ),
      grouped: db.prepare(
        "SELECT * FROM journal WHERE guard = 'group' AND decision = 'suppressed' AND at >= ? ORDER BY at DESC, seq DESC LIMIT ?",
      ),
      pendingVerifications: db.prepare(
        "SELECT * FROM journal WHERE verify_outcome = 'pending' ORDER BY at, seq LIMIT ?",
      ),
      // `(operation = 'notify') = ?`: notifications and remediations are counted apart.
      // Ineffective verdicts (INEFFECTIVE_OPERATION) count for the breaker (keyCount) only.
      lastOnTarget: db.prepare(
        "SELECT MAX(at) AS at FROM attempts WHERE adapter = ? AND target = ? AND shadow = ? AND (operation = 'notify') = ? AND operation != 'ineffective'",
      ),
      ruleCount: db.prepare(
        "SELECT COUNT(*) AS n FROM attempts WHERE rule = ? AND shadow = ? AND at > ? AND (operation = 'notify') = ? AND operation != 'ineffective'",
      ),
      globalCount: db.prepare(
        "SELECT COUNT(*) AS n FROM attempts WHERE shadow = ? AND at > ? AND (operation = 'notify') = ? AND operation != 'ineffective'",
      ),
      keyCount: db.prepare(
        "SELECT COUNT(*) AS n FROM attempts WHERE key_id = ? AND shadow = ? AND at > ? AND (operation = 'notify') = ?",
      ),
      // Both bounded by the storm cap: at most its max distinct keys per rule and window.
      stormOthers: db.prepare(
        "SELECT COUNT(DISTINCT key_id) AS n FROM attempts WHERE rule = ? AND shadow = ? AND at > ? AND key_id != ? AND operation != 'ineffective'",
      ),
      stormThis: db.prepare(
        "SELECT COUNT(*) AS n FROM attempts WHERE rule = ? AND shadow = ? AND at > ? AND key_id = ? AND operation != 'ineffective'",
      ),
      groupTargets: db.prepare(
        "SELECT DISTINCT target FROM attempts WHERE adapter = ? AND grp = ? AND shadow = ? AND operation = 'kill-and-replace' AND at > ?",
      ),
      attempt: db.prepare(
        'INSERT INTO attempts (id, at, rule, key_id, adapter, target, operation, grp, shadow) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      ),
      // Read for every alert the remediator handles: prepared once, not per call.
      killSwitch: db.prepare("SELECT value FROM settings WHERE name = 'kill_switch'"),
      silences: db.prepare('SELECT * FROM silences WHERE until > ? ORDER BY id'),
      noticeUntil: db.prepare('SELECT until FROM notices WHERE key = ?'),
      setNotice: db.prepare(
        'INSERT INTO notices (key, until) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET until = excluded.until',
      ),
      inhibit: db.prepare(
        'INSERT INTO inhibitions (service, until) VALUES (?, ?) ON CONFLICT (service) DO UPDATE SET until = MAX(until, excluded.until)',
      ),
      inhibitedUntil: db.prepare('SELECT until FROM inhibitions WHERE service = ?'),
      inhibitFiring: db.prepare(
        'INSERT INTO inhibitors (service, firing, alert_id, until) VALUES (?, ?, ?, ?) ON CONFLICT (service, firing) DO UPDATE SET alert_id = excluded.alert_id, until = MAX(until, excluded.until)',
      ),
      releaseFiring: db.prepare('DELETE FROM inhibitors WHERE service = ? AND firing = ?'),
      inhibitors: db.prepare(
        'SELECT alert_id, until FROM inhibitors WHERE service = ? AND until > ? ORDER BY until DESC LIMIT 100',
      ),
    };
  }

  claim(id: string, at: number, fence?: ClaimFence): boolean {
    if (!fence) return this.statements.claim.run(id, at).changes === 1;
    // The generation check and the claim in one transaction, across processes.
    return this.db
      .transaction(() => {
        const seen = this.statements.taskGeneration.get(fence.task) as
          { generation: number } | undefined;
        if (seen && seen.generation > fence.generation) return false;
        this.statements.seeGeneration.run(fence.task, fence.generation);
        return this.statements.claim.run(id, at).changes === 1;
      })
      .immediate();
  }

  interruptedClaims(): Array<{ id: string; at: number }> {
    return this.db
      .prepare('SELECT id, at FROM claims WHERE id NOT IN (SELECT id FROM journal) ORDER BY at')
      .all() as Array<{ id: string; at: number }>;
  }

  record(d: Decision): void {
    const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));
    this.statements.record.run(
      d.id,
      d.at,
      d.alertId,
      d.rule,
      JSON.stringify(d.key),
      d.adapter,
      d.operation,
      d.target,
      json(d.params),
      d.decision,
      d.guard ?? null,
      d.reason ?? null,
      json(d.result),
      d.error ?? null,
      d.durationMs ?? null,
      json(d.alert),
      json(d.verification),
      d.verification?.outcome ?? null,
      d.guards && d.guards.length > 0 ? JSON.stringify(d.guards) : null,
      d.notification ?? null,
    );
  }

  grouped(since: number, limit: number): Decision[] {
    return (this.statements.grouped.all(since, limit) as Array<Record<string, unknown>>)
      .map(fromRow)
      .reverse();
  }

  journaled(ids: string[]): Set<string> {
    if (ids.length > MAX_JOURNALED_IDS)
      throw new Error(`journaled() answers for at most ${MAX_JOURNALED_IDS} ids at once`);
    if (ids.length === 0) return new Set();
    const rows = this.db
      .prepare(`SELECT DISTINCT id FROM journal WHERE id IN (${ids.map(() => '?').join(', ')})`)
      .all(...ids) as Array<{ id: string }>;
    return new Set(rows.map((r) => r.id));
  }

  pendingVerifications(limit: number): Decision[] {
    return (this.statements.pendingVerifications.all(limit) as Array<Record<string, unknown>>).map(
      fromRow,
    );
  }

  settleVerification(id: string, verification: Verification): boolean {
    return (
      this.statements.settleVerification.run(JSON.stringify(verification), verification.outcome, id)
        .changes > 0
    );
  }

  ledger(q: LedgerQuery): LedgerCounts {
    const s = this.statements;
    const shadow = q.shadow ? 1 : 0;
    const notify = q.notify ? 1 : 0;
    const n = (row: unknown) => (row as { n: number }).n;
    return {
      lastOnTarget:
        (s.lastOnTarget.get(q.adapter, q.target, shadow, notify) as { at: number | null }).at ??
        undefined,
      rule: q.ruleWindows.map((w) => n(s.ruleCount.get(q.rule, shadow, q.now - w, notify))),
      global: q.globalWindows.map((w) => n(s.globalCount.get(shadow, q.now - w, notify))),
      key: q.breakerWindows.map((w) => n(s.keyCount.get(q.keyId, shadow, q.now - w, notify))),
      ...(q.stormWindows && {
        storm: q.stormWindows.map((w) => ({
          otherKeys: n(s.stormOthers.get(q.rule, shadow, q.now - w, q.keyId)),
          thisKey: n(s.stormThis.get(q.rule, shadow, q.now - w, q.keyId)) > 0,
        })),
      }),
      groupTargets:
        q.group === undefined
          ? []
          : (
              s.groupTargets.all(q.adapter, q.group, shadow, q.now - q.blastWindowMs) as Array<{
                target: string;
              }>
            ).map((r) => r.target),
    };
  }

  reserve(
    attempt: Attempt,
    query: LedgerQuery,
    check: (counts: LedgerCounts) => Suppression | undefined,
  ): Suppression | undefined {
    return this.db
      .transaction(() => {
        const verdict = check(this.ledger(query));
        if (verdict) return verdict;
        this.statements.attempt.run(
          attempt.id,
          attempt.at,
          attempt.rule,
          attempt.keyId,
          attempt.adapter,
          attempt.target,
          attempt.operation,
          attempt.group ?? null,
          attempt.shadow ? 1 : 0,
        );
        return undefined;
      })
      .immediate();
  }

  list(options: ListOptions = {}): Decision[] {
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
    if (options.alertId !== undefined) {
      where.push('alert_id = ?');
      args.push(options.alertId);
    }
    const rows = this.db
      .prepare(
        `SELECT * FROM journal ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, seq DESC LIMIT ?`,
      )
      .all(...args, options.limit ?? 100) as Array<Record<string, unknown>>;
    return rows.map(fromRow);
  }

  killSwitch(): boolean {
    const row = this.statements.killSwitch.get() as { value: string } | undefined;
    return row?.value === 'on';
  }

  setKillSwitch(on: boolean): void {
    this.db
      .prepare(
        "INSERT INTO settings (name, value) VALUES ('kill_switch', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      )
      .run(on ? 'on' : 'off');
  }

  addSilence(
    matchers: Record<string, string>,
    until: number,
    comment = '',
    options: { expireOnResolve?: boolean } = {},
  ): number {
    validateMatchers(matchers);
    if (!Number.isFinite(until)) throw new Error('a silence needs an expiry time');
    return Number(
      this.db
        .prepare(
          'INSERT INTO silences (matchers, until, comment, expire_on_resolve) VALUES (?, ?, ?, ?)',
        )
        .run(JSON.stringify(matchers), until, comment, options.expireOnResolve ? 1 : 0)
        .lastInsertRowid,
    );
  }

  silences(now: number): Silence[] {
    const rows = this.statements.silences.all(now) as Array<{
      id: number;
      matchers: string;
      until: number;
      comment: string;
      expire_on_resolve: number;
    }>;
    return rows.map(({ expire_on_resolve, ...r }) => ({
      ...r,
      matchers: JSON.parse(r.matchers) as Record<string, string>,
      ...(expire_on_resolve === 1 && { expireOnResolve: true }),
    }));
  }

  removeSilence(id: number | string): boolean {
    return this.db.prepare('DELETE FROM silences WHERE id = ?').run(Number(id)).changes === 1;
  }

  noticeOnce(key: string, now: number, until: number): boolean {
    return this.db
      .transaction(() => {
        const row = this.statements.noticeUntil.get(key) as { until: number } | undefined;
        if (row && row.until > now) return false;
        this.statements.setNotice.run(key, until);
        return true;
      })
      .immediate();
  }

  inhibit(service: string, until: number): void {
    this.statements.inhibit.run(service, until);
  }

  inhibitFiring(service: string, firing: string, alert: string, until: number): void {
    this.statements.inhibitFiring.run(service, firing, alert, until);
  }

  releaseFiring(service: string, firing: string): void {
    this.statements.releaseFiring.run(service, firing);
  }

  inhibitors(service: string, now: number): Inhibitor[] {
    return (
      this.statements.inhibitors.all(service, now) as Array<{ alert_id: string; until: number }>
    ).map((r) => ({ alert: r.alert_id, until: r.until }));
  }

  inhibitedUntil(service: string): number | undefined {
    const row = this.statements.inhibitedUntil.get(service) as { until: number } | undefined;
    return row?.until;
  }

  /**
   * Retention, in slices of `slice` rows (one short write transaction each), so a large
   * backlog never holds the write lock long enough to stall a reservation.
   */
  prune(options: { now: number; maxAgeMs: number; maxEntries: number; slice?: number }): {
    entries: number;
  } {
    const slice = options.slice ?? 10_000;
    const cutoff = options.now - options.maxAgeMs;
    let entries = 0;
    const deleteSlice = this.db.prepare(
      'DELETE FROM journal WHERE seq IN (SELECT seq FROM journal WHERE at < ? OR seq <= ? ORDER BY seq LIMIT ?)',
    );
    // The newest entry beyond the count: it and everything before it go.
    const beyond = this.db
      .prepare('SELECT seq FROM journal ORDER BY seq DESC LIMIT 1 OFFSET ?')
      .get(options.maxEntries) as { seq: number } | undefined;
    const lastSeq = beyond?.seq ?? -1;
    for (;;) {
      const n = deleteSlice.run(cutoff, lastSeq, slice).changes;
      entries += n;
      if (n < slice) break;
    }
    // Claims go with their entries: those older than the oldest entry kept (a claim in
    // flight is newer). Attempts by age only, since budgets count them within windows.
    const oldest = (
      this.db.prepare('SELECT MIN(at) AS at FROM journal').get() as { at: number | null }
    ).at;
    // Inhibitors whose firing never resolved, once their cap passed.
    this.db.prepare('DELETE FROM inhibitors WHERE until <= ?').run(options.now);
    for (const [table, before] of [
      ['claims', oldest ?? cutoff],
      ['attempts', cutoff],
    ] as const) {
      const del = this.db.prepare(
        `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE at < ? LIMIT ?)`,
      );
      while (del.run(before, slice).changes === slice);
    }
    return { entries };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function fromRow(r: Record<string, unknown>): Decision {
  const parse = (v: unknown) =>
    v === null || v === undefined ? undefined : (JSON.parse(v as string) as unknown);
  const d: Decision = {
    id: r.id as string,
    at: r.at as number,
    alertId: r.alert_id as string,
    rule: r.rule as string,
    key: JSON.parse(r.key as string) as Record<string, unknown>,
    adapter: r.adapter as string,
    operation: r.operation as string,
    target: r.target as string,
    decision: r.decision as DecisionKind,
  };
  const params = parse(r.params) as Record<string, unknown> | undefined;
  if (params) d.params = params;
  if (r.guard !== null) d.guard = r.guard as string;
  if (r.reason !== null) d.reason = r.reason as string;
  const result = parse(r.result) as Record<string, unknown> | undefined;
  if (result) d.result = result;
  if (r.error !== null) d.error = r.error as string;
  if (r.duration_ms !== null) d.durationMs = r.duration_ms as number;
  const alert = parse(r.alert) as Alert | undefined;
  if (alert) d.alert = alert;
  const verification = parse(r.verification) as Verification | undefined;
  if (verification) d.verification = verification;
  const guards = parse(r.guards) as Decision['guards'];
  if (guards) d.guards = guards;
  if (typeof r.notification === 'string') d.notification = r.notification;
  return d;
}

/** Opens (creating if needed) the embedded store at `path`. */
export function openSqliteStore(path: string): ActionStore {
  return new ActionStore(path);
}
