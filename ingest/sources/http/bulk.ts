/**
 * The Elasticsearch `_bulk` API (and the endpoints its clients probe first): decoded as it
 * streams in, each document line by the byte path where it can, items kept in order.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BusBackpressureError, type PublishBatch, type PublishResult } from '../../bus/types.ts';
import { type BulkItem, BulkStream, encodeBulkResponse } from '../decoders/bulk.ts';
import { normalize } from '../../model/normalize.ts';
import { createByteLine } from './byte-line.ts';
import { registerElasticsearchCompat } from './elasticsearch-compat.ts';
import { streamed as streamedBody } from './body.ts';
import type { IngestContext } from './context.ts';

export function bulkPlugin(ctx: IngestContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { options, maxBodyBytes } = ctx;
    const streamed = (
      decoder: Parameters<typeof streamedBody>[2],
      routes: Parameters<typeof streamedBody>[3],
    ) => streamedBody(app, maxBodyBytes, decoder, routes);
    const { byteLine, refusal: lastRefusal } = createByteLine();
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
              const refusal = lastRefusal();
              if (refusal === undefined) positions.push(stream.items.length - 1);
              else
                item.error = {
                  type: 'document_parsing_exception',
                  reason: refusal,
                  status: 400,
                };
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
            // Per item, as Elasticsearch does: shippers retry exactly these. The answer
            // stays a 200, as Elasticsearch's; the bus's wait goes with it as Retry-After,
            // as on every other 429 of this server, for a client that reads it (Filebeat
            // and the OpenTelemetry Collector back off on the items' 429 by their own
            // schedule).
            throttled = true;
            reply.header('retry-after', String(err.retryAfterSeconds));
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
  };
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
