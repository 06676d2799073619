/** OTLP/HTTP logs and metrics, protobuf or JSON. */
import type { FastifyInstance } from 'fastify';
import type { Event } from '../../model/event.ts';
import { BULK_REASON_CHARS } from '../decoders/bulk.ts';
import { decodeOtlp, encodeOtlpResponse, OtlpDecodeError } from '../decoders/otlp.ts';
import { normalize } from '../../model/normalize.ts';
import { streamed as streamedBody } from './body.ts';
import type { IngestContext } from './context.ts';

export function otlpPlugin(ctx: IngestContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { options, maxBodyBytes, publish } = ctx;
    const streamed = (
      decoder: Parameters<typeof streamedBody>[2],
      routes: Parameters<typeof streamedBody>[3],
    ) => streamedBody(app, maxBodyBytes, decoder, routes);
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
            // The answer carries how many were rejected and the first reason only, clipped
            // as a _bulk reason is: a reason may quote a refused value of any size.
            let rejected = 0;
            let firstReason = '';
            const reject = (reason: string) => {
              if (rejected++ === 0) firstReason = clipReason(reason);
            };
            const receivedAt = Date.now();
            for (const record of records) {
              try {
                events.push(normalize(record, { receivedAt }));
              } catch (err) {
                reject((err as Error).message);
              }
            }
            const result = await publish(reply, events);
            if (!result) return reply;
            for (const r of result.rejected) reject(r.reason);
            options.onIngest?.({
              protocol: 'otlp',
              events: result.accepted.length,
              bytes: raw.length,
              decodeErrors: records.length - events.length,
              rejected: result.rejected.length,
              throttled: false,
            });
            const response = encodeOtlpResponse(signal, json, rejected, firstReason);
            return reply.code(200).header('content-type', response.contentType).send(response.body);
          });
        }
      },
    );
  };
}

/** A reason clipped as a `_bulk` item's is, saying how long it was. */
function clipReason(reason: string): string {
  return reason.length > BULK_REASON_CHARS
    ? `${reason.slice(0, BULK_REASON_CHARS)}… (${reason.length} characters)`
    : reason;
}
