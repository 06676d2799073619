import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

/**
 * Rules workers on one host may share one SQLite journal and start together: real
 * processes opening the same new file at once all get a store (the schema and its
 * migrations are one write transaction; before, two could add the same column and the
 * second died with "duplicate column name").
 */
const STORE = pathToFileURL(
  join(import.meta.dirname, '..', '..', '..', 'actions', 'journal', 'sqlite.ts'),
);

function open(file: string, at: number): Promise<{ code: number | null; err: string }> {
  const code = `
    const { openSqliteStore } = await import(${JSON.stringify(STORE.href)});
    while (Date.now() < ${at}) {}
    openSqliteStore(${JSON.stringify(file)}).close();
  `;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (c) => resolve({ code: c, err }));
  });
}

it('processes opening one new journal at once all open it', { timeout: 60_000 }, async () => {
  for (let round = 0; round < 3; round++) {
    const file = join(mkdtempSync(join(tmpdir(), 'drover-journal-race-')), 'actions.db');
    // Each child loads first, then all open at the same instant.
    const at = Date.now() + 4_000;
    const results = await Promise.all(Array.from({ length: 6 }, () => open(file, at)));
    for (const r of results) expect(r, r.err).toMatchObject({ code: 0 });
  }
});
