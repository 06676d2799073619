import { openSqlite, type SqliteDatabase, type SqliteStatement } from '../storage/sqlite.ts';
import type { BusBatch } from '../bus/types.ts';
import type { Event } from '../model/event.ts';
import { documentId, type SearchParams, type SearchResult } from '../index/search.ts';

/**
 * The embedded index: SQLite with an FTS5 table over the text of events (message and
 * error fields), plus columns for time, service, host, level and fingerprint. Ids are
 * bus positions, so a redelivered batch does not duplicate anything.
 */
export class EmbeddedIndex {
  private readonly db: SqliteDatabase;
  private readonly insertEvent: SqliteStatement;
  private readonly insertText: SqliteStatement;

  constructor(path: string) {
    this.db = openSqlite(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL,
        service TEXT, host TEXT, level TEXT, fingerprint TEXT, body TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
      CREATE INDEX IF NOT EXISTS events_service_ts ON events (service, ts);
      CREATE VIRTUAL TABLE IF NOT EXISTS events_text USING fts5 (text, content='');
    `);
    this.insertEvent = this.db.prepare(
      'INSERT INTO events (id, ts, service, host, level, fingerprint, body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
    );
    this.insertText = this.db.prepare('INSERT INTO events_text (rowid, text) VALUES (?, ?)');
  }

  private add(id: string, e: Event): void {
    const r = this.insertEvent.run(
      id,
      e['@timestamp'],
      e['service.name'] ?? null,
      e['host.name'] ?? null,
      e['log.level'] ?? null,
      e['error.fingerprint'] ?? null,
      JSON.stringify(e),
    );
    if (r.changes === 0) return; // redelivered: already indexed
    const text = [e.message, e['error.type'], e['error.message'], e['error.stack_trace']]
      .filter((v) => typeof v === 'string')
      .join('\n');
    this.insertText.run(r.lastInsertRowid, text);
  }

  /** The consumer handler: one transaction per batch. */
  async indexBatch(batch: BusBatch): Promise<void> {
    this.db.transaction(() => {
      for (const m of batch.messages) this.add(documentId(m), m.event);
    })();
  }

  async search(params: SearchParams): Promise<SearchResult> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (params.q) {
      where.push('seq IN (SELECT rowid FROM events_text WHERE events_text MATCH ?)');
      args.push(toFtsQuery(params.q));
    }
    if (params.from !== undefined) {
      where.push('ts >= ?');
      args.push(params.from);
    }
    if (params.to !== undefined) {
      where.push('ts <= ?');
      args.push(params.to);
    }
    if (params.service) {
      where.push('service = ?');
      args.push(params.service);
    }
    if (params.level) {
      where.push('level = ?');
      args.push(params.level);
    }
    const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
    const total = (
      this.db.prepare(`SELECT COUNT(*) AS n FROM events ${clause}`).get(...args) as { n: number }
    ).n;
    const rows = this.db
      .prepare(`SELECT body FROM events ${clause} ORDER BY ts DESC, seq DESC LIMIT ?`)
      .all(...args, params.size ?? 50) as Array<{ body: string }>;
    return { total, events: rows.map((r) => JSON.parse(r.body) as Event) };
  }

  close(): void {
    this.db.close();
  }
}

/** Words and "quoted phrases", each quoted for FTS5 so user input is never query syntax. */
export function toFtsQuery(q: string): string {
  const terms = q.match(/"[^"]*"|\S+/g) ?? [];
  return terms
    .map((t) => t.replace(/^"|"$/g, ''))
    .filter((t) => t.trim() !== '')
    .map((t) => `"${t.replace(/"/g, '""')}"`)
    .join(' AND ');
}

export function openEmbeddedIndex(path: string): EmbeddedIndex {
  return new EmbeddedIndex(path);
}
