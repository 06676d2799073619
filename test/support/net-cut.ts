import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP relay that can be cut like a network partition: while cut, nothing it holds or
 * accepts goes through in either direction and nothing is closed, so the client's
 * requests go unanswered (a lost network, not a refused connection). Healing closes
 * every connection it held, as a partition that lasted past TCP's patience ends, and
 * relays again from then on.
 */
export interface NetCut {
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startNetCut(listen: number, target: number): Promise<NetCut> {
  let cut = false;
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
    client.pipe(upstream);
    upstream.pipe(client);
  });
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
  };
  return cutter;
}
