import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { Transform } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { type BulkItem, BulkStream, encodeBulkResponse } from '../decoders/bulk.ts';
import { NdjsonStream } from '../decoders/ndjson.ts';
import { decodeOtlp, encodeOtlpResponse, OtlpDecodeError } from '../decoders/otlp.ts';
import { decodeRemoteWrite, RemoteWriteDecodeError } from '../decoders/remote-write.ts';
import { StatsdDecoder } from '../decoders/statsd.ts';
import { createSocket, type Socket } from 'node:dgram';
import {
  type Bus,
  BusBackpressureError,
  type PublishBatch,
  type PublishResult,
} from '../bus/types.ts';
import type { Event } from '../event.ts';
import { parseSearchParams, type SearchIndex, SearchParamsError } from '../indexer/search.ts';
import { type NormalizeOptions, normalize } from '../normalize.ts';
import { JsonLineNormalizer } from '../normalize-json.ts';
import { registerElasticsearchCompat } from './elasticsearch-compat.ts';
import { createRejections, type Rejections } from './rejections.ts';
import { isSqliteBusy } from '../sqlite.ts';
import { HttpError, PayloadTooLarge } from '../errors.ts';
import { redact } from '../redact.ts';

/**
 * The log-shipper endpoint: one HTTP server for every protocol Drover speaks, so the
 * shippers an operator already runs can point at it unchanged. Each route decodes,
 * normalizes (the same code the rules engine uses) and publishes to the bus; the
 * response acknowledges only what the bus made durable.
 */
export interface IngestServerOptions {
  bus: Bus;
  host?: string;
  port?: number;
  /** Accepted `Authorization: Bearer <token>` values. */
  tokens?: string[];
  /** Accepted `Authorization: ApiKey <base64(id:key)>` values (base64 or `id:key`). */
  apiKeys?: string[];
  /**
   * Bearer tokens that may ingest besides `tokens` (the pipeline's admin tokens). They do
   * not make an endpoint "authenticated": without `tokens` or `apiKeys` ingest is open.
   */
  extraTokens?: string[];
  /**
   * Bearer tokens that may read (`GET /v1/search`) besides `extraTokens`; ingest
   * credentials never may. Without any credential configured, reads are as open as
   * ingest is.
   */
  readTokens?: string[];
  /**
   * Decides who may read instead (the pipeline's check, which also checks `Host`):
   * throws an error with a `statusCode` (401, 403) to refuse.
   */
  authorizeRead?: (req: FastifyRequest, reply: FastifyReply) => void;
  /** Listening beyond loopback without tokens or keys must be asked for explicitly. */
  allowUnauthenticated?: boolean;
  /** Limit on a request body after decompression. Default 16 MiB. */
  maxBodyBytes?: number;
  tls?: { key: string | Buffer; cert: string | Buffer };
  search?: SearchIndex;
  /**
   * More routes on the same server (the pipeline's API), registered before it listens.
   * A route whose config has an `access` field authorizes itself: the ingest credential
   * check skips it.
   */
  routes?: (app: FastifyInstance) => void;
  /**
   * statsd over UDP on this port (default 8125) and host (default 127.0.0.1: UDP
   * carries no credential, so statsd leaves loopback only when configured to); false
   * turns it off. `maxGauges` bounds the gauge series remembered for deltas (default
   * 10,000; see StatsdDecoder).
   */
  statsd?: { port?: number; host?: string; maxGauges?: number } | false;
  logger?: Logger;
  onIngest?: (m: IngestMetrics) => void;
}

export interface IngestMetrics {
  protocol: 'ndjson' | 'bulk' | 'otlp' | 'remote_write' | 'statsd';
  events: number;
  bytes: number;
  decodeErrors: number;
  rejected: number;
  throttled: boolean;
  /** statsd: gauge series evicted from the delta memory by this packet. */
  evicted?: number;
}

export interface IngestServer {
  app: FastifyInstance;
  url: string;
  statsdPort: number | undefined;
  /** The address statsd is bound to. */
  statsdAddress: string | undefined;
  close(): Promise<void>;
}

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

  /** Publishes, answering 429 with Retry-After when the bus pushes back. */
  const publish = (reply: FastifyReply, events: Event[]): Promise<PublishResult | undefined> => {
    const batch = options.bus.batch();
    for (const event of events) batch.add(event);
    return publishBatch(reply, batch);
  };

  const publishBatch = async (
    reply: FastifyReply,
    batch: PublishBatch,
  ): Promise<PublishResult | undefined> => {
    if (batch.length === 0) return { accepted: [], rejected: [] };
    try {
      return await options.bus.publishBatch(batch);
    } catch (err) {
      if (err instanceof BusBackpressureError) {
        await reply
          .code(429)
          .header('retry-after', String(err.retryAfterSeconds))
          .send({ error: err.message });
        return undefined;
      }
      throw err;
    }
  };

  /**
   * Routes whose bodies are read as they stream in, through their content-encoding and
   * within the limit (413): `decoder(req)` takes the chunks, and what its `end` returns
   * is the handler's `req.body`.
   */
  const streamed = (
    decoder: (req: FastifyRequest) => { push(chunk: Buffer): void; end(): unknown },
    routes: (scope: FastifyInstance) => void,
  ) =>
    app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (req, payload, done) => {
        const body = decoder(req);
        readBody(req, payload, maxBodyBytes, {
          data: (chunk) => body.push(chunk),
          end: () => done(null, body.end()),
          error: (err) => done(err, undefined),
        });
      });
      routes(scope);
    });

  // NDJSON and _bulk are decoded, normalized and serialized as the body streams in, so a
  // request never holds its whole body nor a string the size of it.
  const byteReader = new JsonLineNormalizer();
  /** Why byteLine's last line was refused (normalize's error), or undefined. */
  let refusal: string | undefined;
  /**
   * Ingest's byte path for one line of NDJSON or one _bulk document: read, modelled and
   * written into the batch. Returns the line's newline, or -1 to have the line read as
   * text (it is blank, or not JSON the byte path reads exactly as JSON.parse would).
   */
  const byteLine = (
    buf: Buffer,
    start: number,
    normalizeOptions: NormalizeOptions,
    batch: PublishBatch,
  ): number => {
    refusal = undefined;
    const end = byteReader.scan(buf, start);
    if (end < 0 || byteReader.blank) return -1;
    try {
      byteReader.model(normalizeOptions);
    } catch (err) {
      refusal = (err as Error).message;
      return end;
    }
    batch.addJson(byteReader.metric ? 'metrics' : 'logs', byteReader.key, byteReader.write);
    return end;
  };
  streamed(
    (req) => {
      const service = (req.query as Record<string, string | undefined>).service;
      const receivedAt = Date.now();
      const parsed: ParsedNdjson = {
        batch: options.bus.batch(),
        lines: [],
        rejected: createRejections(),
        decodeErrors: 0,
        bytes: 0,
      };
      const normalizeOptions = { receivedAt, service };
      const decoder = new NdjsonStream(
        (line, value) => {
          try {
            parsed.batch.add(normalize(value, normalizeOptions));
            parsed.lines.push(line);
          } catch (err) {
            parsed.decodeErrors++;
            parsed.rejected.add(line, (err as Error).message);
          }
        },
        (line, error) => {
          parsed.decodeErrors++;
          parsed.rejected.add(line, error);
        },
        // Most lines go from their bytes straight to the event's JSON; what that cannot
        // read exactly comes back to the two callbacks above.
        (buf, start, line) => {
          const end = byteLine(buf, start, normalizeOptions, parsed.batch);
          if (end >= 0) {
            if (refusal === undefined) parsed.lines.push(line);
            else {
              parsed.decodeErrors++;
              parsed.rejected.add(line, refusal);
            }
          }
          return end;
        },
      );
      return {
        push: (chunk: Buffer) => {
          parsed.bytes += chunk.length;
          decoder.push(chunk);
        },
        end: () => {
          decoder.end();
          return parsed;
        },
      };
    },
    (scope) => {
      scope.post('/ingest', async (req, reply) => {
        const { batch, lines, rejected, decodeErrors, bytes } = req.body as ParsedNdjson;
        const result = await publishBatch(reply, batch);
        if (!result) {
          options.onIngest?.({
            protocol: 'ndjson',
            events: 0,
            bytes,
            decodeErrors,
            rejected: 0,
            throttled: true,
          });
          return reply;
        }
        for (const r of result.rejected) rejected.add(lines[r.index]!, r.reason);
        options.onIngest?.({
          protocol: 'ndjson',
          events: result.accepted.length,
          bytes,
          decodeErrors,
          rejected: result.rejected.length,
          throttled: false,
        });
        const status = result.accepted.length === 0 && rejected.total > 0 ? 400 : 200;
        // At most ECHOED_REJECTIONS lines are echoed, then how many more there were.
        const shown = rejected.shown();
        return reply.code(status).send({
          accepted: result.accepted.length,
          rejected: shown,
          ...(rejected.total > shown.length && { omitted: rejected.total - shown.length }),
        });
      });
    },
  );

  // _bulk is decoded as it streams in too: each document line goes the byte path where
  // it can, and the items keep their order for the response.
  streamed(
    (req) => {
      const receivedAt = Date.now();
      const normalizeOptions = { receivedAt };
      const batch = options.bus.batch();
      const positions: number[] = [];
      const index = (req.params as { index?: string }).index;
      const stream: BulkStream = new BulkStream(index, {
        parsed: (item, value) => {
          try {
            batch.add(normalize(value, normalizeOptions));
            positions.push(stream.items.length - 1);
          } catch (err) {
            item.error = {
              type: 'document_parsing_exception',
              reason: (err as Error).message,
              status: 400,
            };
          }
        },
        read: (item, buf, start) => {
          const end = byteLine(buf, start, normalizeOptions, batch);
          if (end >= 0) {
            if (refusal === undefined) positions.push(stream.items.length - 1);
            else item.error = { type: 'document_parsing_exception', reason: refusal, status: 400 };
          }
          return end;
        },
      });
      let bytes = 0;
      // Every item echoes the index the URL names, so it bounds the answer's size per
      // byte of body: at most 100 bytes (the router's limit, in characters), no control
      // characters (each would be written as 6).
      if (index !== undefined && !isEchoableIndex(index)) stream.malformed = INVALID_INDEX;
      return {
        push: (chunk: Buffer) => {
          bytes += chunk.length;
          stream.push(chunk);
        },
        end: (): ParsedBulk => {
          stream.end();
          return {
            items: stream.items,
            batch,
            positions,
            receivedAt,
            bytes,
            malformed: stream.malformed,
          };
        },
      };
    },
    (scope) => {
      const bulk = async (req: FastifyRequest, reply: FastifyReply) => {
        const started = Date.now();
        const { items, batch, positions, receivedAt, bytes, malformed } = req.body as ParsedBulk;
        if (malformed !== undefined) {
          // The whole request is refused before anything of it was published, as
          // Elasticsearch refuses it: one error, whatever the size of the body.
          options.onIngest?.({
            protocol: 'bulk',
            events: 0,
            bytes,
            decodeErrors: 1,
            rejected: 0,
            throttled: false,
          });
          const error = {
            type:
              malformed === INVALID_INDEX
                ? 'invalid_index_name_exception'
                : 'illegal_argument_exception',
            reason: malformed,
          };
          return reply.code(400).send({ error: { root_cause: [error], ...error }, status: 400 });
        }
        let throttled = false;
        let result: PublishResult = { accepted: [], rejected: [] };
        try {
          result = batch.length > 0 ? await options.bus.publishBatch(batch) : result;
        } catch (err) {
          if (!(err instanceof BusBackpressureError)) throw err;
          // Per item, as Elasticsearch does: shippers retry exactly these.
          throttled = true;
          for (const p of positions)
            items[p]!.error = {
              type: 'es_rejected_execution_exception',
              reason: err.message,
              status: 429,
            };
        }
        for (const r of result.rejected)
          items[positions[r.index]!]!.error = {
            type: 'document_parsing_exception',
            reason: r.reason,
            status: 400,
          };
        const failed = items.filter((i) => i.error).length;
        options.onIngest?.({
          protocol: 'bulk',
          events: items.length - failed,
          bytes,
          decodeErrors: failed,
          rejected: result.rejected.length,
          throttled,
        });
        return reply
          .type('application/json')
          .send(encodeBulkResponse(items, Date.now() - started, receivedAt));
      };
      scope.post('/_bulk', bulk);
      scope.put('/_bulk', bulk);
      scope.post('/:index/_bulk', bulk);
      scope.put('/:index/_bulk', bulk);
    },
  );
  registerElasticsearchCompat(app);

  // OTLP decodes a whole message: its body is gathered (inflated within the limit first).
  streamed(
    () => {
      const chunks: Buffer[] = [];
      return { push: (chunk: Buffer) => chunks.push(chunk), end: () => Buffer.concat(chunks) };
    },
    (scope) => {
      for (const signal of ['logs', 'metrics'] as const) {
        scope.post(`/v1/${signal}`, async (req, reply) => {
          const raw = req.body as Buffer;
          const contentType = String(req.headers['content-type'] ?? 'application/x-protobuf');
          const json = /json/i.test(contentType);
          let records: Record<string, unknown>[];
          try {
            records = decodeOtlp(signal, raw, contentType);
          } catch (err) {
            // 413 for a request past the decoder's bounds (the exporter splits it), 400 else.
            if (err instanceof OtlpDecodeError)
              return reply.code(err.statusCode).send({ code: 3, message: err.message });
            throw err;
          }
          const events: Event[] = [];
          const errors: string[] = [];
          const receivedAt = Date.now();
          for (const record of records) {
            try {
              events.push(normalize(record, { receivedAt }));
            } catch (err) {
              errors.push((err as Error).message);
            }
          }
          const result = await publish(reply, events);
          if (!result) return reply;
          for (const r of result.rejected) errors.push(r.reason);
          options.onIngest?.({
            protocol: 'otlp',
            events: result.accepted.length,
            bytes: raw.length,
            decodeErrors: records.length - events.length,
            rejected: result.rejected.length,
            throttled: false,
          });
          const response = encodeOtlpResponse(signal, json, errors.length, errors[0] ?? '');
          return reply.code(200).header('content-type', response.contentType).send(response.body);
        });
      }
    },
  );

  app.post('/api/v1/write', async (req, reply) => {
    const raw = (req.body as Buffer | undefined) ?? Buffer.alloc(0);
    let decoded: ReturnType<typeof decodeRemoteWrite>;
    try {
      decoded = decodeRemoteWrite(raw, maxBodyBytes);
    } catch (err) {
      if (err instanceof RemoteWriteDecodeError) {
        // Prometheus retries 5xx and drops 4xx: a body it cannot fix is a 400.
        return reply.code(err.statusCode).send({ error: err.message });
      }
      throw err;
    }
    const events: Event[] = [];
    // A sample normalize refuses (a time out of range) is dropped and counted; the rest
    // are kept, and the answer says so (400: Prometheus does not resend it).
    let refused = 0;
    let firstRefusal = '';
    for (const sample of decoded.samples) {
      try {
        events.push(normalize(sample));
      } catch (err) {
        if (refused++ === 0) firstRefusal = (err as Error).message;
      }
    }
    const result = await publish(reply, events);
    if (!result) return reply;
    options.onIngest?.({
      protocol: 'remote_write',
      events: result.accepted.length,
      bytes: raw.length,
      decodeErrors: refused,
      rejected: result.rejected.length,
      throttled: false,
    });
    if (refused > 0)
      return reply
        .code(400)
        .send({ error: `${refused} samples refused, the first: ${firstRefusal}` });
    return reply.code(204).send();
  });

  // A read route: it answers with what was ingested, which an ingest credential (held by
  // every shipper) must not open. It authorizes itself (`access`), as control routes do.
  app.get(
    '/v1/search',
    {
      config: { access: 'read' },
      onRequest: async (req, reply) => authorizeRead(req, reply),
    },
    async (req, reply) => {
      if (!options.search) return reply.code(404).send({ error: 'no index is configured' });
      try {
        return await options.search.search(parseSearchParams(req.query as Record<string, string>));
      } catch (err) {
        if (err instanceof SearchParamsError) return reply.code(400).send({ error: err.message });
        throw err;
      }
    },
  );

  options.routes?.(app);
  const statsd =
    options.statsd === false
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

/**
 * statsd over UDP. A datagram cannot be retried, so when the bus pushes back its samples
 * are dropped and counted (throttled), never half-acknowledged.
 */
async function listenStatsd(options: IngestServerOptions, host: string): Promise<Socket> {
  const decoder = new StatsdDecoder(
    (options.statsd as { maxGauges?: number } | undefined)?.maxGauges,
  );
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (packet) => {
    const evictedBefore = decoder.evicted;
    const { samples, errors } = decoder.decode(packet.toString('utf8'));
    const evicted = decoder.evicted - evictedBefore;
    const events: Event[] = [];
    for (const s of samples) {
      try {
        events.push(normalize(s));
      } catch (err) {
        errors.push({ line: String(s['metric.name']), error: (err as Error).message });
      }
    }
    const report = (accepted: number, throttled: boolean) =>
      options.onIngest?.({
        protocol: 'statsd',
        events: accepted,
        bytes: packet.length,
        decodeErrors: errors.length,
        rejected: 0,
        throttled,
        ...(evicted > 0 && { evicted }),
      });
    if (events.length === 0) return report(0, false);
    options.bus.publish(events).then(
      (r) => report(r.accepted.length, false),
      (err: unknown) => {
        report(0, err instanceof BusBackpressureError);
        if (!(err instanceof BusBackpressureError))
          options.logger?.error({ err }, 'statsd samples could not be published');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind((options.statsd as { port?: number } | undefined)?.port ?? 8125, host, () =>
      resolve(),
    );
  });
  return socket;
}

/** An NDJSON body, decoded and serialized for the bus while it arrived. */
interface ParsedNdjson {
  batch: PublishBatch;
  /** The line of each event in the batch. */
  lines: number[];
  rejected: Rejections;
  decodeErrors: number;
  /** Bytes after decompression. */
  bytes: number;
}

/** A `_bulk` body, decoded and serialized for the bus while it arrived. */
interface ParsedBulk {
  items: BulkItem[];
  batch: PublishBatch;
  /** The item of each event in the batch. */
  positions: number[];
  receivedAt: number;
  /** Bytes after decompression. */
  bytes: number;
  /** Why the whole request is refused (a malformed action line), if it is. */
  malformed: string | undefined;
}

/** The longest index name in a `_bulk` URL, in bytes. */
const MAX_INDEX_BYTES = 100;
const INVALID_INDEX = `Invalid index name: at most ${MAX_INDEX_BYTES} bytes, no control characters`;

function isEchoableIndex(index: string): boolean {
  // eslint-disable-next-line no-control-regex
  return Buffer.byteLength(index) <= MAX_INDEX_BYTES && !/[\u0000-\u001f\u007f]/.test(index);
}

/**
 * Streams a request body through its content-encoding, chunk by chunk, with the limit
 * applied to the bytes received and to the bytes decompressed (413 past either).
 */
function readBody(
  req: FastifyRequest,
  payload: NodeJS.ReadableStream & { destroy?: () => void },
  limit: number,
  on: { data: (chunk: Buffer) => void; end: () => void; error: (err: Error) => void },
): void {
  if (Number(req.headers['content-length']) > limit) {
    on.error(new PayloadTooLarge('request body too large'));
    return;
  }
  const encoding = String(req.headers['content-encoding'] ?? '').toLowerCase();
  let inflate: Transform | undefined;
  if (encoding === 'gzip' || encoding === 'x-gzip') inflate = createGunzip();
  else if (encoding === 'deflate') inflate = createInflate();
  else if (encoding !== '' && encoding !== 'identity') {
    on.error(
      new HttpError(`unsupported content-encoding ${encoding}`, 415, 'DROVER_UNSUPPORTED_ENCODING'),
    );
    return;
  }
  let settled = false;
  const fail = (err: Error) => {
    if (settled) return;
    settled = true;
    inflate?.destroy();
    payload.removeAllListeners('data');
    // Keep draining what the client still sends, so the error reply can be read.
    payload.resume();
    on.error(err);
  };
  let received = 0;
  let decoded = 0;
  const take = (chunk: Buffer) => {
    if (settled) return;
    decoded += chunk.length;
    if (decoded > limit) return fail(new PayloadTooLarge('decompressed body too large'));
    try {
      on.data(chunk);
    } catch (err) {
      fail(err as Error);
    }
  };
  const finish = () => {
    if (settled) return;
    settled = true;
    try {
      on.end();
    } catch (err) {
      on.error(err as Error);
    }
  };
  payload.on('error', (err: Error) =>
    fail(Object.assign(err, { statusCode: (err as { statusCode?: number }).statusCode ?? 400 })),
  );
  if (inflate) {
    inflate.on('data', take);
    inflate.on('end', finish);
    inflate.on('error', (err: Error) =>
      fail(
        new HttpError(`could not decompress the body: ${err.message}`, 400, 'DROVER_BAD_ENCODING'),
      ),
    );
  }
  payload.on('data', (chunk: Buffer) => {
    if (settled) return;
    received += chunk.length;
    if (received > limit) return fail(new PayloadTooLarge('request body too large'));
    if (inflate) inflate.write(chunk);
    else take(chunk);
  });
  payload.on('end', () => {
    if (settled) return;
    if (inflate) inflate.end();
    else finish();
  });
}

/**
 * Who may read when the embedding program does not say: a read token or an extra (admin)
 * token, or anyone when nothing at all is configured (ingest is open, on loopback).
 */
function readCheck(
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

function apiKeyHeader(key: string): string {
  return `ApiKey ${key.includes(':') ? Buffer.from(key).toString('base64') : key}`;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
