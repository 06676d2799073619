/** `POST /ingest`: NDJSON, one event per line, decoded as it streams in. */
import type { FastifyInstance } from 'fastify';
import type { PublishBatch } from '../../bus/types.ts';
import { NdjsonStream } from '../decoders/ndjson.ts';
import { normalize } from '../../model/normalize.ts';
import { createByteLine } from './byte-line.ts';
import { createRejections, type Rejections } from './rejections.ts';
import { streamed as streamedBody } from './body.ts';
import type { IngestContext } from './context.ts';

export function ndjsonPlugin(ctx: IngestContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { options, maxBodyBytes, publishBatch } = ctx;
    const streamed = (
      decoder: Parameters<typeof streamedBody>[2],
      routes: Parameters<typeof streamedBody>[3],
    ) => streamedBody(app, maxBodyBytes, decoder, routes);
    const { byteLine, refusal: lastRefusal } = createByteLine();
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
              const refusal = lastRefusal();
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
  };
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
