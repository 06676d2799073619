/**
 * The ingest server's auth: every route needs an ingest credential (a bearer token or an
 * API key) once any is configured, except routes that authorize themselves (`config:
 * { access }`, the read and control routes); read routes take read or admin tokens.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IngestServerOptions } from './options.ts';

/** The credential hook; `credentials` are the accepted Authorization header values. */
export function addCredentialCheck(
  app: FastifyInstance,
  options: IngestServerOptions,
  credentials: string[],
): void {
  if (credentials.length > 0) {
    credentials.push(...(options.extraTokens ?? []).map((t) => `Bearer ${t}`));
    app.addHook('onRequest', async (req, reply) => {
      if ((req.routeOptions.config as { access?: unknown } | undefined)?.access !== undefined)
        return;
      const given = req.headers.authorization ?? '';
      if (!credentials.some((c) => safeEqual(c, given))) {
        await reply
          .code(401)
          .header('www-authenticate', 'Bearer, ApiKey')
          .send({ error: 'missing or invalid credentials' });
      }
    });
  }
}

/**
 * Who may read when the embedding program does not say: a read token or an extra (admin)
 * token, or anyone when nothing at all is configured (ingest is open, on loopback).
 */
export function readCheck(
  options: IngestServerOptions,
  open: boolean,
): (req: FastifyRequest, reply: FastifyReply) => void {
  const readers = [...(options.readTokens ?? []), ...(options.extraTokens ?? [])].map(
    (t) => `Bearer ${t}`,
  );
  const openReads = open && (options.readTokens ?? []).length === 0;
  return (req, reply) => {
    if (openReads) return;
    const given = req.headers.authorization ?? '';
    if (!readers.some((c) => safeEqual(c, given))) {
      reply.header('www-authenticate', 'Bearer');
      throw Object.assign(new Error('this route needs a read token'), { statusCode: 401 });
    }
  };
}

export function apiKeyHeader(key: string): string {
  return `ApiKey ${key.includes(':') ? Buffer.from(key).toString('base64') : key}`;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
