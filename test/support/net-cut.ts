import { createServer, type Server, type Socket, connect } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * A TCP relay that can be cut like a network partition: while cut, nothing it holds or
 * accepts goes through in either direction and nothing is closed, so the client's
 * requests go unanswered (a lost network, not a refused connection). Healing closes
 * every connection it held, as a partition that lasted past TCP's patience ends, and
 * relays again from then on.
 *
 * With `{ tamper: true }` it also reads the Kafka protocol going through (request
 * frames for their api key and version, response frames whole) and can damage the
 * record batches of Fetch responses (`corruptFetches`), as a disk or a network that
 * flips a bit would: the broker's data stays intact, the client gets a bad copy.
 */
export interface NetCut {
  cut(): void;
  heal(): void;
  close(): Promise<void>;
  /**
   * From now on, flips a byte (the last) of one record batch of `topic` in Fetch
   * responses: the first batch of the topic a response brings after this call (of
   * `partition` if given), then that same batch (by first offset) wherever a later
   * response brings it, `times` responses in all (default: every one). With
   * `lastOffsetDelta`, that batch's header field is overwritten with it instead (the
   * CRC covers it: the batch fails it the same way, its header now lies about its end).
   * Only with `{ tamper: true }`.
   */
  /**
   * Cuts (as cut()) when the next request with Kafka api key `apiKey` goes through, from
   * any client: that request reaches the broker, its answer and everything after stay
   * held. Resolves once it has cut. Only with `{ tamper: true }`.
   */
  cutAtRequest(apiKey: number): Promise<void>;
  /**
   * From now on, holds each request with Kafka api key `apiKey` (a Produce, api key 0,
   * only if it writes to `topic`, when given) for `ms` before it goes on to the broker,
   * while the requests after it on its connection go through: the broker answers them
   * first, as kafkajs allows (it matches answers by correlation id). `times` requests
   * in all (default: every one); `until` stops holding. Only with `{ tamper: true }`.
   */
  holdRequests(rule: { apiKey: number; ms: number; topic?: string; times?: number }): {
    /** Requests held so far. */
    held: number;
    until(): void;
  };
  corruptFetches(target: {
    topic: string;
    partition?: number;
    times?: number;
    lastOffsetDelta?: number;
  }): FetchTamper;
}

/** What corruptFetches() did so far. */
export interface FetchTamper {
  /** The damaged batch's partition and first offset, once chosen. */
  partition: number | undefined;
  firstOffset: string | undefined;
  /** Its lastOffsetDelta as the broker wrote it. */
  lastOffsetDelta: number | undefined;
  /** Fetch responses damaged. */
  responses: number;
}

const PRODUCE = 0;
const FETCH = 1;

/**
 * The topics a Produce request (v3-v8, non-flexible: the versions kafkajs sends) writes
 * to; none for another version or a frame too short for what it claims.
 */
function produceTopics(frame: Buffer): string[] {
  const version = frame.readInt16BE(6);
  if (version < 3 || version > 8) return [];
  try {
    let at = 12; // size, api key, version, correlation id
    const clientId = frame.readInt16BE(at);
    at += 2 + Math.max(0, clientId);
    const transactionalId = frame.readInt16BE(at);
    at += 2 + Math.max(0, transactionalId);
    at += 2 + 4; // acks, timeout
    const count = frame.readInt32BE(at);
    at += 4;
    const topics: string[] = [];
    for (let i = 0; i < count; i++) {
      const length = frame.readInt16BE(at);
      topics.push(frame.toString('utf8', at + 2, at + 2 + length));
      at += 2 + length;
      const partitions = frame.readInt32BE(at);
      at += 4;
      for (let j = 0; j < partitions; j++) {
        const records = frame.readInt32BE(at + 4);
        at += 8 + Math.max(0, records);
      }
    }
    return topics;
  } catch {
    return [];
  }
}

export async function startNetCut(
  listen: number,
  target: number,
  options: { tamper?: boolean } = {},
): Promise<NetCut> {
  let cut = false;
  let cutAt: { key: number; done: () => void } | undefined;
  // The hold rules armed (holdRequests): a few per test.
  const holds: Array<{
    apiKey: number;
    ms: number;
    topic?: string;
    left: number;
    held: number;
    until(): void;
  }> = [];
  let tamper:
    (FetchTamper & { topic: string; wanted?: number; left: number; delta?: number }) | undefined;
  const pairs = new Set<[Socket, Socket | undefined]>();
  const server: Server = createServer((client) => {
    const pair: [Socket, Socket | undefined] = [client, undefined];
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      pair[1]?.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    // Accepted while cut: held open, never relayed (heal closes it).
    if (cut) return;
    const upstream = connect(target, '127.0.0.1');
    pair[1] = upstream;
    upstream.on('error', drop).on('close', drop);
    if (!options.tamper) {
      client.pipe(upstream);
      upstream.pipe(client);
      return;
    }
    // Requests go through whole frames, a held one later (holdRequests): its timer is
    // bounded by the requests the rules armed select.
    const requests = new Framer((frame) => {
      const rule = holdOf(frame);
      if (!rule) return frame;
      rule.held++;
      rule.left--;
      setTimeout(() => {
        if (!upstream.destroyed && !cut) upstream.write(frame);
      }, rule.ms);
      return undefined;
    });
    client.pipe(requests).pipe(upstream);
    // The requests' api key and version by correlation id (answered in order, one
    // connection's: bounded by the requests in flight on it).
    const asked = new Map<number, { key: number; version: number }>();
    frames(client, (frame) => {
      if (frame.length < 12) return;
      const key = frame.readInt16BE(4);
      asked.set(frame.readInt32BE(8), { key, version: frame.readInt16BE(6) });
      if (key === cutAt?.key) {
        const { done } = cutAt;
        cutAt = undefined;
        cutter.cut();
        done();
      }
    });
    const responses = new Framer((frame) => {
      const id = frame.readInt32BE(4);
      const req = asked.get(id);
      asked.delete(id);
      if (tamper && tamper.left > 0 && req?.key === FETCH && req.version >= 4 && req.version <= 11)
        if (damage(frame, req.version, tamper)) {
          tamper.responses++;
          tamper.left--;
        }
      return frame;
    });
    upstream.pipe(responses).pipe(client);
  });
  /** The armed rule that holds this request frame, if any. */
  const holdOf = (frame: Buffer): (typeof holds)[number] | undefined => {
    if (frame.length < 14) return undefined;
    const key = frame.readInt16BE(4);
    const rule = holds.find((h) => h.left > 0 && h.apiKey === key);
    if (!rule || rule.topic === undefined) return rule;
    return key === PRODUCE && produceTopics(frame).includes(rule.topic) ? rule : undefined;
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen, '127.0.0.1', () => resolve());
  });
  const cutter: NetCut = {
    cut() {
      cut = true;
      for (const [client, upstream] of pairs) {
        // Unpiped and paused: what either side sends from now on stays in its buffers.
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    heal() {
      cut = false;
      for (const [client, upstream] of [...pairs]) {
        client.destroy();
        upstream?.destroy();
      }
      pairs.clear();
    },
    close() {
      cutter.heal();
      return new Promise((resolve) => server.close(() => resolve()));
    },
    holdRequests(rule) {
      if (!options.tamper) throw new Error('startNetCut(..., { tamper: true }) reads no request');
      const armed = {
        apiKey: rule.apiKey,
        ms: rule.ms,
        ...(rule.topic !== undefined && { topic: rule.topic }),
        left: rule.times ?? Number.POSITIVE_INFINITY,
        held: 0,
        until: () => (armed.left = 0),
      };
      holds.push(armed);
      return armed;
    },
    cutAtRequest(apiKey) {
      if (!options.tamper) throw new Error('startNetCut(..., { tamper: true }) reads no request');
      return new Promise((done) => (cutAt = { key: apiKey, done }));
    },
    corruptFetches(t) {
      if (!options.tamper) throw new Error('startNetCut(..., { tamper: true }) reads no Fetch');
      tamper = {
        topic: t.topic,
        ...(t.partition !== undefined && { wanted: t.partition }),
        ...(t.lastOffsetDelta !== undefined && { delta: t.lastOffsetDelta }),
        left: t.times ?? Number.POSITIVE_INFINITY,
        partition: undefined,
        firstOffset: undefined,
        lastOffsetDelta: undefined,
        responses: 0,
      };
      return tamper;
    },
  };
  return cutter;
}

/** Calls `each` with every whole Kafka frame (size-prefixed) the socket sends, read alongside its pipe. */
function frames(socket: Socket, each: (frame: Buffer) => void): void {
  let held: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
    while (held.length >= 4 && held.length >= 4 + held.readInt32BE(0)) {
      const size = 4 + held.readInt32BE(0);
      each(held.subarray(0, size));
      held = held.subarray(size);
    }
  });
}

/** Passes Kafka frames through whole, each through `map`. */
class Framer extends Transform {
  private held: Buffer = Buffer.alloc(0);

  constructor(private readonly each: (frame: Buffer) => Buffer | undefined) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let held: Buffer = this.held.length === 0 ? chunk : Buffer.concat([this.held, chunk]);
    while (held.length >= 4 && held.length >= 4 + held.readInt32BE(0)) {
      const size = 4 + held.readInt32BE(0);
      const out = this.each(Buffer.from(held.subarray(0, size)));
      if (out) this.push(out);
      held = held.subarray(size);
    }
    this.held = held;
    done();
  }
}

/**
 * Flips the last byte of the tampered batch in a Fetch response (v4-v11, the versions
 * kafkajs sends), or overwrites its lastOffsetDelta, in place. Returns whether it did.
 */
function damage(
  frame: Buffer,
  version: number,
  t: FetchTamper & { topic: string; wanted?: number; delta?: number },
): boolean {
  let at = 8; // size, correlation id
  at += 4; // throttle time
  if (version >= 7) at += 6; // error code, session id
  let damaged = false;
  const topics = frame.readInt32BE(at);
  at += 4;
  for (let i = 0; i < topics; i++) {
    const nameLength = frame.readInt16BE(at);
    const topic = frame.toString('utf8', at + 2, at + 2 + nameLength);
    at += 2 + nameLength;
    const partitions = frame.readInt32BE(at);
    at += 4;
    for (let j = 0; j < partitions; j++) {
      const partition = frame.readInt32BE(at);
      at += 4 + 2 + 8 + 8; // partition, error code, high watermark, last stable offset
      if (version >= 5) at += 8; // log start offset
      const aborted = frame.readInt32BE(at);
      at += 4 + Math.max(0, aborted) * 16;
      if (version >= 11) at += 4; // preferred read replica
      const size = frame.readInt32BE(at);
      at += 4;
      const end = at + Math.max(0, size);
      if (topic === t.topic && (t.wanted === undefined || t.wanted === partition))
        for (let b = at; b + 12 <= end;) {
          const first = String(frame.readBigInt64BE(b));
          const length = frame.readInt32BE(b + 8);
          if (b + 12 + length > end) break;
          if (t.firstOffset === undefined) {
            t.partition = partition;
            t.firstOffset = first;
            t.lastOffsetDelta = frame.readInt32BE(b + 23);
          }
          if (t.partition === partition && t.firstOffset === first) {
            if (t.delta === undefined) frame[b + 12 + length - 1]! ^= 0x01;
            else frame.writeInt32BE(t.delta, b + 23);
            damaged = true;
          }
          b += 12 + length;
        }
      at = end;
    }
  }
  return damaged;
}
