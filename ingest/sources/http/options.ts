import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Bus } from '../../bus/types.ts';
import type { SearchIndex } from '../../index/search.ts';

/** What the ingest server is built from, what it reports, and what it gives back. */
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
  /**
   * False: no ingest route (NDJSON, _bulk and its compatibility routes, OTLP,
   * remote_write) and no statsd, only `/v1/search` and `routes` (a `drover serve`
   * without the ingest role). Default true.
   */
  ingest?: boolean;
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
