import { loadConfig } from '../config.ts';
import { readAdminToken } from '../admin-token.ts';
import { redact } from '../redact.ts';
import { UsageError } from './common.ts';

/**
 * How a CLI command reaches a running `drover serve`'s admin routes: the URL (`--url`,
 * else the configuration's listen address) and the admin token (`DROVER_ADMIN_TOKEN`,
 * else the configuration's first `listen.adminTokens`, else the token `drover serve`
 * generated into the state directory: `--state-dir`, the configuration's, or
 * DROVER_STATE_DIR / .drover).
 */
export interface AdminClientOptions {
  url?: string;
  config?: string;
  stateDir?: string;
}

export function adminClient(
  options: AdminClientOptions,
  env: NodeJS.ProcessEnv = process.env,
): { url: string; token: string } {
  const config = loadConfig(options.config, env);
  let url = options.url;
  if (url === undefined) {
    const l = config.listen;
    const host = ['0.0.0.0', '::', ''].includes(l.host) ? '127.0.0.1' : l.host;
    url = `${l.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${l.port}`;
  }
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new UsageError(`--url: "${redact(url)}" is not an http(s) URL`);
  }
  const stateDir = options.stateDir ?? config.stateDir;
  const token =
    env.DROVER_ADMIN_TOKEN ?? config.listen.adminTokens?.[0] ?? readAdminToken(stateDir);
  if (!token)
    throw new UsageError(
      `no admin token: set DROVER_ADMIN_TOKEN, or point --state-dir or --config at the state directory drover serve uses (no admin-token in ${stateDir})`,
    );
  return { url: url.replace(/\/+$/, ''), token };
}

/** POSTs or PUTs JSON to an admin route with the token; the answer's status and body. */
export async function callAdmin(
  client: { url: string; token: string },
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(`${client.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${client.token}`,
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new UsageError(
      `could not reach drover serve at ${redact(client.url)}: ${(err as Error).message}`,
    );
  }
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    parsed = { error: text.slice(0, 200) };
  }
  return { status: res.status, body: parsed };
}
