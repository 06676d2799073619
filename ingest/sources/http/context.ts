/**
 * What every protocol plugin of the ingest server shares: its options, the body limit,
 * and publishing with the bus's backpressure answered as 429 + Retry-After.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  type Bus,
  BusBackpressureError,
  type PublishBatch,
  type PublishResult,
} from '../../bus/types.ts';
import type { Event } from '../../model/event.ts';
import type { IngestServerOptions } from './options.ts';

export interface IngestContext {
  options: IngestServerOptions;
  /** Limit on a request body after decompression. */
  maxBodyBytes: number;
  // Functions, not methods: plugins take them out of the context.
  publish: (reply: FastifyReply, events: Event[]) => Promise<PublishResult | undefined>;
  publishBatch: (reply: FastifyReply, batch: PublishBatch) => Promise<PublishResult | undefined>;
  /** Who may call a read route (`config: { access: 'read' }`). */
  authorizeRead: (req: FastifyRequest, reply: FastifyReply) => void;
}

export function createPublisher(bus: Bus): Pick<IngestContext, 'publish' | 'publishBatch'> {
  /** Publishes, answering 429 with Retry-After when the bus pushes back. */
  const publish = (reply: FastifyReply, events: Event[]): Promise<PublishResult | undefined> => {
    const batch = bus.batch();
    for (const event of events) batch.add(event);
    return publishBatch(reply, batch);
  };

  const publishBatch = async (
    reply: FastifyReply,
    batch: PublishBatch,
  ): Promise<PublishResult | undefined> => {
    if (batch.length === 0) return { accepted: [], rejected: [] };
    try {
      return await bus.publishBatch(batch);
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
  return { publish, publishBatch };
}
