/** OTLP/HTTP logs and metrics, protobuf or JSON. */
import type { FastifyInstance } from 'fastify';
import type { Event } from '../event.ts';
import { decodeOtlp, encodeOtlpResponse, OtlpDecodeError } from '../decoders/otlp.ts';
import { normalize } from '../normalize.ts';
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
  };
}
