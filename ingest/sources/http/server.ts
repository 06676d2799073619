/**
 * The log-shipper endpoint: one HTTP server for every protocol Drover speaks, so the
 * shippers an operator already runs can point at it unchanged. Each route decodes,
 * normalizes (the same code the rules engine uses) and publishes to the bus; the
 * response acknowledges only what the bus made durable.
 *
 * The parts: a plugin per protocol (ndjson.ts, bulk.ts with the Elasticsearch
 * compatibility routes, otlp.ts, remote-write.ts, search.ts), the body reader (body.ts),
 * the auth hook (auth.ts), its options and results (options.ts), and statsd over UDP apart
 * from HTTP (../statsd.ts).
 */

import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { isSqliteBusy } from '../../storage/sqlite.ts';
import { PayloadTooLarge } from '../errors.ts';
import { redact } from '../../model/redact.ts';
import { addCredentialCheck, apiKeyHeader, readCheck } from './auth.ts';
import { bulkPlugin } from './bulk.ts';
import { createPublisher, type IngestContext } from './context.ts';
import { ndjsonPlugin } from './ndjson.ts';
import { otlpPlugin } from './otlp.ts';
import { remoteWritePlugin } from './remote-write.ts';
import { searchPlugin } from './search.ts';
import { listenStatsd } from '../statsd.ts';
import type { IngestServer, IngestServerOptions } from './options.ts';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export async function createIngestServer(options: IngestServerOptions): Promise<IngestServer> {
  const host = options.host ?? '127.0.0.1';
  const maxBodyBytes = options.maxBodyBytes ?? 16 << 20;
  const credentials = [
    ...(options.tokens ?? []).map((t) => `Bearer ${t}`),
    ...(options.apiKeys ?? []).map(apiKeyHeader),
  ];
  if (credentials.length === 0 && !LOOPBACK.test(host) && !options.allowUnauthenticated) {
    throw new Error(
      `refusing to listen on ${host} without tokens or API keys (set allowUnauthenticated to do it anyway)`,
    );
  }
  const app = Fastify({
    bodyLimit: maxBodyBytes,
    logger: false,
    // HEAD routes are declared where shippers use them (existence checks answer 200).
    exposeHeadRoutes: false,
    ...(options.tls && { https: { key: options.tls.key, cert: options.tls.cert } }),
  }) as unknown as FastifyInstance;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const authorizeRead = options.authorizeRead ?? readCheck(options, credentials.length === 0);
  addCredentialCheck(app, options, credentials);
  // Elasticsearch clients check this header on every response.
  app.addHook('onSend', async (_req, reply) => {
    reply.header('x-elastic-product', 'Elasticsearch');
  });
  app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (isSqliteBusy(err)) {
      // Another process holds the embedded bus's lock: nothing was acknowledged, and the
      // same request a moment later succeeds. Shippers retry 503s.
      options.logger?.warn({ err }, 'the bus is busy; the shipper was told to retry');
      await reply
        .code(503)
        .header('retry-after', '1')
        .send({ error: 'the bus is busy; retry shortly' });
      return;
    }
    const status =
      err instanceof PayloadTooLarge || err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 413
        : (err.statusCode ?? 500);
    if (status >= 500) {
      // What failed inside (a store's URL with its credentials, a path, a stack) is for
      // the log, redacted there too; the caller gets an id to find it by.
      const id = randomUUID();
      options.logger?.error(
        {
          id,
          err: { type: err.name, message: redact(err.message), stack: redact(err.stack ?? '') },
        },
        'ingest request failed',
      );
      await reply
        .code(status)
        .send({ error: 'internal error; the server log has the details', id });
      return;
    }
    await reply
      .code(status)
      .send({ error: status === 413 ? `request body exceeds ${maxBodyBytes} bytes` : err.message });
  });

  const ctx: IngestContext = {
    options,
    maxBodyBytes,
    ...createPublisher(options.bus),
    authorizeRead,
  };
  const ingest = options.ingest !== false;
  // One plugin per protocol; the hooks and error handler above apply to each.
  if (ingest) {
    await app.register(ndjsonPlugin(ctx));
    await app.register(bulkPlugin(ctx));
    await app.register(otlpPlugin(ctx));
    await app.register(remoteWritePlugin(ctx));
  }
  await app.register(searchPlugin(ctx));
  options.routes?.(app);
  const statsd =
    options.statsd === false || !ingest
      ? undefined
      : await listenStatsd(options, options.statsd?.host ?? '127.0.0.1');

  await app.listen({ host, port: options.port ?? 4280 });
  const address = app.server.address() as { port: number };
  const url = `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  return {
    app,
    url,
    statsdPort: statsd ? statsd.address().port : undefined,
    statsdAddress: statsd ? statsd.address().address : undefined,
    close: async () => {
      if (statsd) await new Promise<void>((r) => statsd.close(() => r()));
      await app.close();
    },
  };
}
