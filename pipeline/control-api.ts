import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RemediationStore } from '../actions/index.ts';
import { type Alert, type Diagnostic, formatDiagnostic, type RuleStats } from '../rules/index.ts';
import {
  type Access,
  AccessError,
  type AccessOptions,
  createAccessCheck,
} from './control-access.ts';
import {
  InputError,
  parseKillSwitch,
  parseListQuery,
  parseSilence,
  parseSilenceId,
} from './control-input.ts';
import { type AlertChain, UnknownAlert } from './explain.ts';
import type { Logger } from './logger.ts';
import { redact } from './redact.ts';
import { isSqliteBusy } from '../ingest/storage/sqlite.ts';

/**
 * The pipeline's own HTTP API on the ingest server, as a Fastify plugin with its own
 * scope: health, metrics, rules, alerts, the journal, the kill switch and silences. It
 * authorizes its own routes (control-access.ts), parses JSON bodies only, and reads the
 * running pipeline through these callbacks, so it knows nothing of how it is wired.
 */
export interface ControlApiOptions {
  access: AccessOptions;
  logger?: Logger;
  ready(): boolean;
  /**
   * Partitions a consumer group stopped consuming at a corrupt Kafka record batch
   * (`bus.corruptBatch: stop`): listed by /healthz and /readyz while there are any. The
   * process stays live and ready (its other partitions, and ingest, go on): a restart
   * would find the same batch.
   */
  stoppedPartitions?(): ReadonlyArray<object>;
  metrics(): Promise<{ contentType: string; body: string }>;
  rules(): RuleStats[];
  reload(): Promise<{ ok: boolean; errors: Diagnostic[]; rules: number }>;
  /** Newest first. */
  alerts(): Alert[];
  store(): RemediationStore;
  /** One alert's whole chain (pipeline/explain.ts); throws UnknownAlert. */
  explain(id: string): Promise<AlertChain>;
  /** Counts a store that answered "busy" (SQLITE_BUSY), for the faults metric. */
  onBusy?(): void;
}

/** Admin bodies are a few matchers and a comment. */
export const CONTROL_BODY_LIMIT = 64 << 10;
/** How long a caller told "busy" (503) should wait. */
const RETRY_AFTER_SECONDS = 1;

/** Routes that authorize themselves carry this in their config; the ingest hook skips them. */
export interface ControlRouteConfig {
  access: Access;
}

export function createControlApi(options: ControlApiOptions): (app: FastifyInstance) => void {
  const check = createAccessCheck(options.access);
  return (app) => {
    void app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(
        'application/json',
        { parseAs: 'string', bodyLimit: CONTROL_BODY_LIMIT },
        (_req, text, done) => {
          if (text === '') return done(null, undefined);
          try {
            done(null, JSON.parse(text as string));
          } catch (err) {
            done(new InputError(`the body is not JSON: ${(err as Error).message}`), undefined);
          }
        },
      );
      scope.addHook('onRequest', async (req, reply) => {
        const config = req.routeOptions.config as Partial<ControlRouteConfig>;
        check(req, reply, config.access ?? 'admin');
      });
      scope.setErrorHandler(
        async (err: Error & { statusCode?: number; code?: string }, req, reply) =>
          onError(err, req, reply),
      );

      const route = (access: Access) => ({ config: { access } satisfies ControlRouteConfig });
      const stopped = () => {
        const list = options.stoppedPartitions?.() ?? [];
        return list.length > 0 ? { stoppedPartitions: list } : {};
      };
      scope.get('/healthz', route('open'), async () => ({ status: 'ok', ...stopped() }));
      scope.get('/readyz', route('open'), async (_req, reply) => {
        const ready = options.ready();
        return reply.code(ready ? 200 : 503).send({ ready, ...stopped() });
      });
      scope.get('/metrics', route('read'), async (_req, reply) => {
        const m = await options.metrics();
        return reply.header('content-type', m.contentType).send(m.body);
      });
      scope.get('/v1/rules', route('read'), async () => ({ rules: options.rules() }));
      scope.post('/v1/rules/reload', route('admin'), async (_req, reply) => {
        const r = await options.reload();
        return reply
          .code(r.ok ? 200 : 422)
          .send({ ok: r.ok, rules: r.rules, errors: r.errors.map(formatDiagnostic) });
      });
      scope.get('/v1/alerts', route('read'), async () => ({ alerts: options.alerts() }));
      // Admin: an explanation shows the events that counted, whatever the logs held.
      scope.get('/v1/alerts/:id', route('admin'), async (req, reply) => {
        try {
          return await options.explain(String((req.params as { id?: unknown }).id ?? ''));
        } catch (err) {
          if (err instanceof UnknownAlert) return reply.code(404).send({ error: err.message });
          throw err;
        }
      });
      scope.get('/v1/actions', route('read'), async (req) => {
        const q = parseListQuery(req.query);
        return { decisions: await options.store().list(q) };
      });
      scope.get('/v1/kill-switch', route('read'), async () => ({
        on: await options.store().killSwitch(),
      }));
      scope.put('/v1/kill-switch', route('admin'), async (req) => {
        const on = parseKillSwitch(req.body);
        await options.store().setKillSwitch(on);
        return { on };
      });
      scope.get('/v1/silences', route('read'), async () => ({
        silences: await options.store().silences(Date.now()),
      }));
      scope.post('/v1/silences', route('admin'), async (req, reply) => {
        const s = parseSilence(req.body, Date.now());
        return reply.code(201).send({
          id: await options.store().addSilence(s.matchers, s.until, s.comment, {
            expireOnResolve: s.expireOnResolve,
          }),
        });
      });
      scope.delete('/v1/silences/:id', route('admin'), async (req, reply) => {
        // SQLite's ids are numbers, Elasticsearch's are UUIDs: each store reads its own.
        const id = parseSilenceId((req.params as { id?: unknown }).id);
        const ok = await options.store().removeSilence(id);
        return reply.code(ok ? 204 : 404).send();
      });
    });
  };

  async function onError(
    err: Error & { statusCode?: number; code?: string },
    req: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply> {
    if (err instanceof AccessError || err instanceof InputError)
      return reply.code(err.statusCode).send({ error: err.message });
    if (isBusy(err)) {
      options.onBusy?.();
      options.logger?.warn(
        { err, url: req.url },
        'the store is busy; the caller was told to retry',
      );
      return reply
        .code(503)
        .header('retry-after', String(RETRY_AFTER_SECONDS))
        .send({ error: 'the store is busy; retry shortly' });
    }
    const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) {
      options.logger?.error({ err, url: req.url }, 'control request failed');
      return reply.code(status).send({ error: redact(err.message) });
    }
    // Fastify's own: 413 (body limit), 415 (no parser for the type), 400 (empty JSON) …
    return reply.code(status).send({ error: err.message });
  }
}

/** SQLite says a lock is held elsewhere (either driver): a moment later the same request succeeds. */
export const isBusy = isSqliteBusy;
