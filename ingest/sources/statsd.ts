/** statsd over UDP, apart from the HTTP server: the same bus, its own socket. */
import { createSocket, type Socket } from 'node:dgram';
import { BusBackpressureError } from '../bus/types.ts';
import { StatsdDecoder } from './decoders/statsd.ts';
import type { Event } from '../model/event.ts';
import { normalize } from '../model/normalize.ts';
import type { IngestServerOptions } from './http/options.ts';

/**
 * statsd over UDP. A datagram cannot be retried, so when the bus pushes back its samples
 * are dropped and counted (throttled), never half-acknowledged.
 */
export async function listenStatsd(options: IngestServerOptions, host: string): Promise<Socket> {
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
