/**
 * The generated admin credential: when the configuration names no `listen.adminTokens`,
 * `drover serve` writes one into the state directory on first start (mode 0600, as
 * Jupyter does) and the CLI on the same host reads it from there. Whoever can read the
 * state directory can act; that is the same person who could edit the journal anyway.
 */

import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ADMIN_TOKEN_FILE = 'admin-token';

export function adminTokenPath(stateDir: string): string {
  return join(stateDir, ADMIN_TOKEN_FILE);
}

/** Reads the token, creating it (256 random bits) when there is none yet. */
export function ensureAdminToken(stateDir: string): string {
  const existing = readAdminToken(stateDir);
  if (existing !== undefined) {
    // A copy restored with a wider mode is narrowed again: the token is a credential.
    chmodSync(adminTokenPath(stateDir), 0o600);
    return existing;
  }
  mkdirSync(stateDir, { recursive: true });
  const token = randomBytes(32).toString('base64url');
  const path = adminTokenPath(stateDir);
  try {
    // 'wx': two processes starting at once must not overwrite each other's token.
    writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readAdminToken(stateDir)!;
  }
  return token;
}

/** The token in the state directory, if one was generated (and is not empty). */
export function readAdminToken(stateDir: string): string | undefined {
  const path = adminTokenPath(stateDir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const token = text.trim();
  return token === '' ? undefined : token;
}
