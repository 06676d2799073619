#!/usr/bin/env node
// A replica of the demo fleet: a real HTTP server on $PORT that logs with pino into
// Drover's NDJSON endpoint. Faults are switched on over HTTP (POST /fault/NAME) so
// the demo can script incidents; `crash-on-boot` is a file, so replacements crash too.
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';

const port = Number(process.env.PORT);
const service = process.env.DROVER_SERVICE ?? 'app';
const replica = process.env.DROVER_REPLICA_ID ?? `${service}-${port}`;
const ingestUrl = process.env.DROVER_INGEST_URL; // e.g. http://127.0.0.1:4280/ingest
const crashFile = process.env.DEMO_CRASH_FILE;

/** Batches pino lines and POSTs them to Drover; on failure they go to stderr, not lost silently. */
class DroverStream extends Writable {
  constructor(url) {
    super();
    this.url = url;
    this.buffer = [];
    this.timer = setInterval(() => this.flush(), 100).unref();
  }
  _write(chunk, _enc, done) {
    this.buffer.push(chunk.toString());
    if (this.buffer.length >= 200) this.flush();
    done();
  }
  async flush() {
    if (this.buffer.length === 0) return;
    const body = this.buffer.join('');
    this.buffer = [];
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body,
      });
      if (!res.ok) process.stderr.write(`ingest answered ${res.status}\n`);
    } catch (err) {
      process.stderr.write(`ingest unreachable: ${err.message}\n`);
    }
  }
  _final(done) {
    clearInterval(this.timer);
    this.flush().finally(done);
  }
}

const destination = ingestUrl ? new DroverStream(ingestUrl) : process.stdout;
const log = pino({ name: service, base: { hostname: replica, pid: process.pid } }, destination);

const faults = { newStack: false, hang: false };

function chargeCard(order) {
  throw new Error(`payment declined for order ${order}`);
}

function reconcileLedger(order) {
  // The new bug: a code path that never failed before.
  const entry = undefined;
  return entry.amount + order;
}

if (crashFile && existsSync(crashFile)) {
  // Crash-looping: the worker inside keeps failing to boot and retrying, serving nothing,
  // until its configuration is fixed (the file goes away); then it boots.
  const fail = () =>
    log.fatal({ err: new Error(`invalid configuration in ${crashFile}`) }, 'boot failed');
  fail();
  const retry = setInterval(() => {
    if (existsSync(crashFile)) return fail();
    clearInterval(retry);
    process.removeListener('SIGTERM', quit);
    boot();
  }, 1_000);
  const quit = () => {
    destination.end?.();
    setTimeout(() => process.exit(0), 200);
  };
  process.on('SIGTERM', quit);
} else boot();

/** Serves HTTP; with DEMO_DEPENDENCY_FILE present, its dependency is down and it says so. */
function boot() {
  const dependencyFile = process.env.DEMO_DEPENDENCY_FILE;
  if (dependencyFile)
    setInterval(() => {
      if (existsSync(dependencyFile))
        log.error({ dependency: 'ledger-db' }, 'dependency unreachable: ledger-db');
    }, 500).unref();
  let served = 0;
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url?.startsWith('/fault/')) {
      const name = req.url.slice('/fault/'.length);
      if (name === 'new-stack') faults.newStack = true;
      else if (name === 'hang') faults.hang = true;
      else {
        res.writeHead(404).end();
        return;
      }
      log.warn({ fault: name }, 'fault injected');
      res.writeHead(204).end();
      return;
    }
    if (req.url === '/healthz') {
      const down = dependencyFile && existsSync(dependencyFile);
      res
        .writeHead(faults.hang || down ? 503 : 200)
        .end(faults.hang ? 'hung' : down ? 'ledger-db unreachable' : 'ok');
      return;
    }
    if (faults.hang) return; // stuck: accepts connections, never answers, logs nothing
    served++;
    const order = 1000 + served;
    try {
      if (service === 'api') {
        if (faults.newStack && served % 2 === 0) reconcileLedger(order);
        else if (faults.newStack && served % 7 === 0) chargeCard(order);
      }
      log.info(
        {
          req: { method: req.method, url: req.url },
          res: { statusCode: 200 },
          responseTime: 1 + (served % 7),
        },
        'request served',
      );
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ replica, served }));
    } catch (err) {
      log.error(
        { err, req: { method: req.method, url: req.url }, res: { statusCode: 500 } },
        'request failed',
      );
      res.writeHead(500).end();
    }
  });
  server.listen(port, '127.0.0.1', () => log.info({ port }, 'replica started'));
  const stop = () => {
    log.info('replica stopping');
    server.close();
    destination.end?.();
    setTimeout(() => process.exit(0), 300).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
