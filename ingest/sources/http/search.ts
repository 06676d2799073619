/** `GET /v1/search`: what was ingested, for read credentials only. */
import type { FastifyInstance } from 'fastify';
import { parseSearchParams, SearchParamsError } from '../../index/search.ts';
import type { IngestContext } from './context.ts';

export function searchPlugin(ctx: IngestContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { options, authorizeRead } = ctx;
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
          return await options.search.search(
            parseSearchParams(req.query as Record<string, string>),
          );
        } catch (err) {
          if (err instanceof SearchParamsError) return reply.code(400).send({ error: err.message });
          throw err;
        }
      },
    );
  };
}
