// The load generator of `npm run bench -- ingest`, in its own process so that the
// server's measured CPU is the server's alone.
// Usage: ingest-client.ts PORT BODIES.json N [PATH (default /ingest)]
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

const [port, file, concurrency, path] = [
  Number(process.argv[2]),
  process.argv[3]!,
  Number(process.argv[4]),
  process.argv[5] ?? '/ingest',
];
const bodies = JSON.parse(readFileSync(file, 'utf8')) as string[];
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function post(body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path,
        headers: {
          'content-type': 'application/x-ndjson',
          'content-length': Buffer.byteLength(body),
        },
        agent,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const started = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < bodies.length) {
      const status = await post(bodies[next++]!);
      if (status !== 200) throw new Error(`ingest answered ${status}`);
    }
  }),
);
process.stdout.write(`${JSON.stringify({ ms: performance.now() - started })}\n`);
agent.destroy();
