/** Prometheus remote_write: `POST /api/v1/write`, a snappy-compressed WriteRequest. */
import type { FastifyInstance } from 'fastify';
import type { Event } from '../../model/event.ts';
import { decodeRemoteWrite, RemoteWriteDecodeError } from '../decoders/remote-write.ts';
import { normalize } from '../../model/normalize.ts';
import type { IngestContext } from './context.ts';

export function remoteWritePlugin(ctx: IngestContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { options, maxBodyBytes, publish } = ctx;
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
  };
}
