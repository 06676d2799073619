import { mkdtempSync } from 'node:fs';
import { openSqlite } from '../../../../ingest/storage/sqlite.ts';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { type EmbeddedBus, openEmbeddedBus } from '../../../../ingest/bus/index.ts';
import { createIngestServer, type IngestServer } from '../../../../ingest/sources/http/index.ts';
import { openEmbeddedIndex } from '../../../../ingest/sinks/index.ts';
import type { SearchIndex } from '../../../../ingest/index/search.ts';
import pino from 'pino';

const opened: Array<{ server: IngestServer; bus: EmbeddedBus }> = [];

async function start(
  options: Parameters<typeof createIngestServer>[0] extends infer O ? Partial<O> : never = {},
  busOptions = {},
) {
  const bus = openEmbeddedBus({
    path: join(mkdtempSync(join(tmpdir(), 'drover-http-')), 'bus.db'),
    ...busOptions,
  });
  const server = await createIngestServer({ bus, port: 0, statsd: false, ...options });
  opened.push({ server, bus });
  return { server, bus, url: server.url };
}

afterEach(async () => {
  for (const { server, bus } of opened.splice(0)) {
    await server.close();
    await bus.close();
  }
});

const ndjson = (objects: unknown[]) => `${objects.map((o) => JSON.stringify(o)).join('\n')}\n`;

describe('NDJSON at /ingest', () => {
  it('accepts pino lines, reports a malformed line by number and keeps the rest', async () => {
    const { url, bus } = await start();
    const body = [
      JSON.stringify({
        level: 50,
        time: 1_700_000_000_000,
        hostname: 'web-1',
        name: 'web',
        msg: 'boom',
      }),
      '{"level": 30, "time": oops}',
      JSON.stringify({ level: 30, time: 1_700_000_000_001, hostname: 'web-2', msg: 'ok' }),
      '[1,2]',
    ].join('\n');
    const res = await fetch(`${url}/ingest?service=fallback`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-ndjson' },
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as {
      accepted: number;
      rejected: Array<{ line: number; error: string }>;
    };
    expect(json.accepted).toBe(2);
    expect(json.rejected.map((r) => r.line)).toEqual([2, 4]);
    expect(json.rejected[0]!.error).toMatch(/invalid JSON/);
    expect(json.rejected[1]!.error).toMatch(/expected a JSON object, got an array/);
    const stored = bus.read('logs', 0, 10).map((m) => m.event);
    expect(stored.map((e) => [e['service.name'], e['host.name'], e['log.level']])).toEqual([
      ['web', 'web-1', 'error'],
      ['fallback', 'web-2', 'info'],
    ]);
  });

  it('rejects by line what normalize refuses, whichever way the line was read', async () => {
    const { url, bus } = await start();
    const body = [
      '{"metric.name":"cpu","metric.value":"high","service.name":"web"}', // the byte path
      '{"metric.name":"cpu","metric.value":"high","clé":1}', // a non-ASCII key: the object path
      '{"metric.name":"cpu","metric.value":0.5,"service.name":"web"}',
    ].join('\n');
    const res = await fetch(`${url}/ingest`, { method: 'POST', body });
    const json = (await res.json()) as {
      accepted: number;
      rejected: Array<{ line: number; error: string }>;
    };
    expect(json.accepted).toBe(1);
    expect(json.rejected).toEqual([
      { line: 1, error: 'metric.value must be a number, got "high"' },
      { line: 2, error: 'metric.value must be a number, got "high"' },
    ]);
    expect(bus.read('metrics', 0, 10).map((m) => m.event['metric.value'])).toEqual([0.5]);
  });

  it('accepts a JSON array and gzip', async () => {
    const { url, bus } = await start();
    const res = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: gzipSync(
        JSON.stringify([{ message: 'a', '@timestamp': '2024-01-01T00:00:00Z' }, { message: 'b' }]),
      ),
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    });
    expect(((await res.json()) as { accepted: number }).accepted).toBe(2);
    expect(bus.read('logs', 0, 10).map((m) => m.event.message)).toEqual(['a', 'b']);
  });

  it('answers 413 when the body exceeds the limit after decompression (a gzip bomb), and stores nothing', async () => {
    const { url, bus } = await start({ maxBodyBytes: 64 * 1024 });
    const bomb = gzipSync(Buffer.alloc(10 * 1024 * 1024, 'a'));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const res = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: bomb,
      headers: { 'content-encoding': 'gzip' },
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: string }).error).toMatch(/exceeds 65536 bytes/);
    const raw = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: Buffer.alloc(100 * 1024, 'a'),
    });
    expect(raw.status).toBe(413);
    expect(bus.read('logs', 0, 10)).toEqual([]);
  });

  it('decodes a body as it streams in: lines cut by writes, even inside a character, keep their numbers and text', async () => {
    const { url, bus } = await start();
    const lines = Array.from({ length: 3_000 }, (_, i) =>
      i % 1_000 === 999 ? '{"message": oops}' : JSON.stringify({ message: `é語 ${i}`, n: i }),
    );
    const bytes = Buffer.from(`${lines.join('\r\n')}\r\n`);
    // Sent in pieces of odd sizes with pauses, so the server reads many partial lines.
    const { port } = new URL(url);
    const status = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/ingest' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      let at = 0;
      const step = () => {
        if (at >= bytes.length) return req.end();
        const size = 1 + ((at * 7919) % 4_001);
        req.write(bytes.subarray(at, at + size));
        at += size;
        setTimeout(step, 1);
      };
      step();
    });
    expect(status.status).toBe(200);
    const json = JSON.parse(status.body) as { accepted: number; rejected: Array<{ line: number }> };
    expect(json.accepted).toBe(2_997);
    expect(json.rejected.map((r) => r.line)).toEqual([1_000, 2_000, 3_000]);
    const stored = bus.read('logs', 0, 5_000).map((m) => m.event);
    expect(stored.map((e) => e.message)).toEqual(
      lines
        .filter((_, i) => i % 1_000 !== 999)
        .map((l) => (JSON.parse(l) as { message: string }).message),
    );
  });

  it('streams a gzip body of many chunks, and reports a corrupt one or an unknown encoding without storing it', async () => {
    const { url, bus } = await start();
    const events = Array.from({ length: 20_000 }, (_, i) => ({
      message: `m${i}`,
      pad: 'x'.repeat(50),
    }));
    const res = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: gzipSync(ndjson(events)),
      headers: { 'content-encoding': 'gzip' },
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { accepted: number }).accepted).toBe(20_000);
    expect(bus.read('logs', 19_999, 1)[0]!.event.message).toBe('m19999');

    const whole = gzipSync(ndjson([{ message: 'never stored' }]));
    const corrupt = Buffer.concat([
      whole.subarray(0, 12),
      Buffer.from('garbage'),
      whole.subarray(12),
    ]);
    const bad = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: corrupt,
      headers: { 'content-encoding': 'gzip' },
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/could not decompress/);
    const unknown = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: ndjson([{ message: 'never stored' }]),
      headers: { 'content-encoding': 'br' },
    });
    expect(unknown.status).toBe(415);
    expect(((await unknown.json()) as { error: string }).error).toMatch(
      /unsupported content-encoding br/,
    );
    expect(bus.stats().topics.logs.next).toBe(20_000);
  });

  it('answers 413 to a chunked body with no length once it passes the limit', async () => {
    const { url, bus } = await start({ maxBodyBytes: 64 * 1024 });
    const line = `${JSON.stringify({ message: 'x'.repeat(1_000) })}\n`;
    const res = await fetch(`${url}/ingest`, {
      method: 'POST',
      // A stream: fetch sends it chunked, without content-length.
      body: new ReadableStream({
        pull(controller) {
          controller.enqueue(new TextEncoder().encode(line.repeat(10)));
        },
      }),
      duplex: 'half',
    });
    expect(res.status).toBe(413);
    expect(bus.read('logs', 0, 10)).toEqual([]);
  });

  it('answers 429 with Retry-After when the bus pushes back', async () => {
    const { url, bus } = await start({}, { maxLag: 2 });
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    const consumer = await bus.consume({ group: 'slow', topics: ['logs'], handler: () => stuck });
    await fetch(`${url}/ingest`, {
      method: 'POST',
      body: ndjson([{ message: 'a' }, { message: 'b' }]),
    });
    const res = await fetch(`${url}/ingest`, { method: 'POST', body: ndjson([{ message: 'c' }]) });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    release();
    await consumer.stop();
  });
});

describe('a busy bus', () => {
  it('answers 503 with Retry-After while another process holds the lock, and accepts after', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-http-'));
    const { url } = await start({}, { path: join(dir, 'bus.db') });
    const other = openSqlite(join(dir, 'bus.db'));
    other.exec('BEGIN EXCLUSIVE');
    const body = ndjson([{ message: 'while locked' }]);
    const busy = await fetch(`${url}/ingest`, { method: 'POST', body });
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');
    other.exec('COMMIT');
    other.close();
    expect((await fetch(`${url}/ingest`, { method: 'POST', body })).status).toBe(200);
  }, 30_000);
});

describe('authentication', () => {
  it('requires a bearer token or an API key when configured', async () => {
    const { url } = await start({ tokens: ['s3cret'], apiKeys: ['id1:key1'] });
    const body = ndjson([{ message: 'x' }]);
    expect((await fetch(`${url}/ingest`, { method: 'POST', body })).status).toBe(401);
    expect(
      (
        await fetch(`${url}/ingest`, {
          method: 'POST',
          body,
          headers: { authorization: 'Bearer wrong' },
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await fetch(`${url}/ingest`, {
          method: 'POST',
          body,
          headers: { authorization: 'Bearer s3cret' },
        })
      ).status,
    ).toBe(200);
    const apiKey = Buffer.from('id1:key1').toString('base64');
    expect(
      (
        await fetch(`${url}/_bulk`, {
          method: 'POST',
          body: '{"index":{}}\n{"message":"x"}\n',
          headers: { authorization: `ApiKey ${apiKey}` },
        })
      ).status,
    ).toBe(200);
  });

  it('refuses to listen beyond loopback without credentials', async () => {
    const bus = openEmbeddedBus({
      path: join(mkdtempSync(join(tmpdir(), 'drover-http-')), 'bus.db'),
    });
    await expect(
      createIngestServer({ bus, host: '0.0.0.0', port: 0, statsd: false }),
    ).rejects.toThrow(/refusing to listen on 0.0.0.0/);
    await bus.close();
  });

  it('keeps statsd on loopback when HTTP listens on every interface (UDP has no credential)', async () => {
    const { server } = await start({ host: '0.0.0.0', tokens: ['s3cret'], statsd: { port: 0 } });
    expect(server.statsdAddress).toBe('127.0.0.1');
    const open = await start({ tokens: ['s3cret'], statsd: { port: 0, host: '0.0.0.0' } });
    expect(open.server.statsdAddress).toBe('0.0.0.0');
  });

  it('admits extra tokens for ingest only when ingest is authenticated, and skips routes that authorize themselves', async () => {
    const { url } = await start({
      tokens: ['s3cret'],
      extraTokens: ['admin'],
      routes: (app) => {
        app.get('/own', { config: { access: 'open' } }, async () => ({ ok: true }));
      },
    });
    const body = ndjson([{ message: 'x' }]);
    const ingest = (token: string) =>
      fetch(`${url}/ingest`, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${token}` },
      });
    expect((await ingest('admin')).status).toBe(200);
    expect((await ingest('other')).status).toBe(401);
    expect((await fetch(`${url}/own`)).status).toBe(200);
  });
});

describe('Elasticsearch _bulk, as shippers speak it', () => {
  it('Filebeat 8: start-up calls, then a gzipped bulk of create actions', async () => {
    const { url, bus } = await start();
    const root = await fetch(`${url}/`);
    expect(root.headers.get('x-elastic-product')).toBe('Elasticsearch');
    expect(((await root.json()) as { version: { number: string } }).version.number).toMatch(/^8\./);
    expect(
      (
        (await (await fetch(`${url}/_license?human=false`)).json()) as {
          license: { status: string };
        }
      ).license.status,
    ).toBe('active');
    expect((await fetch(`${url}/_ilm/policy/filebeat`)).status).toBe(200);
    expect((await fetch(`${url}/_index_template/filebeat-8.15.0`, { method: 'HEAD' })).status).toBe(
      200,
    );
    expect(
      (
        await fetch(`${url}/_index_template/filebeat-8.15.0`, {
          method: 'PUT',
          body: '{}',
          headers: { 'content-type': 'application/json' },
        })
      ).status,
    ).toBe(200);
    const docs = [
      {
        '@timestamp': '2024-05-01T10:00:00.000Z',
        message: 'GET /health 200',
        log: { level: 'info' },
        host: { name: 'web-1' },
        service: { name: 'web' },
        agent: { type: 'filebeat', version: '8.15.0' },
        ecs: { version: '8.0.0' },
      },
      {
        '@timestamp': '2024-05-01T10:00:01.000Z',
        message: 'upstream timed out',
        log: { level: 'error' },
        host: { name: 'web-1' },
        service: { name: 'web' },
      },
    ];
    const body = `${docs.flatMap((d) => [JSON.stringify({ create: { _index: 'filebeat-8.15.0' } }), JSON.stringify(d)]).join('\n')}\n`;
    const res = await fetch(`${url}/_bulk`, {
      method: 'POST',
      body: gzipSync(body),
      headers: { 'content-type': 'application/json; charset=UTF-8', 'content-encoding': 'gzip' },
    });
    const json = (await res.json()) as {
      errors: boolean;
      took: number;
      items: Array<{ create: { status: number; _index: string } }>;
    };
    expect(json.errors).toBe(false);
    expect(json.items.map((i) => [i.create.status, i.create._index])).toEqual([
      [201, 'filebeat-8.15.0'],
      [201, 'filebeat-8.15.0'],
    ]);
    const stored = bus.read('logs', 0, 10).map((m) => m.event);
    expect(stored.map((e) => [e['service.name'], e['log.level'], e['agent.type']])).toEqual([
      ['web', 'info', 'filebeat'],
      ['web', 'error', undefined],
    ]);
  });

  it('Vector and Fluent Bit: health check, then index actions on /{index}/_bulk; bad items fail alone, in order', async () => {
    const { url, bus } = await start();
    expect(
      ((await (await fetch(`${url}/_cluster/health`)).json()) as { status: string }).status,
    ).toBe('green');
    const body = [
      JSON.stringify({ index: { _id: 'a1' } }),
      JSON.stringify({ timestamp: '2024-05-01T10:00:00Z', message: 'one', host: 'vec-1' }),
      JSON.stringify({ index: {} }),
      '{"message": "broken',
      JSON.stringify({ delete: { _id: 'x' } }),
      JSON.stringify({ create: {} }),
      JSON.stringify({ message: 'three' }),
    ].join('\n');
    const res = await fetch(`${url}/vector-logs/_bulk`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-ndjson' },
    });
    const json = (await res.json()) as {
      errors: boolean;
      items: Array<
        Record<string, { status: number; _id: string; _index: string; error?: { type: string } }>
      >;
    };
    expect(json.errors).toBe(true);
    expect(
      json.items.map(
        (i) =>
          Object.entries(i).map(([action, r]) => [action, r.status, r._index, r.error?.type])[0],
      ),
    ).toEqual([
      ['index', 201, 'vector-logs', undefined],
      ['index', 400, 'vector-logs', 'document_parsing_exception'],
      ['delete', 400, 'vector-logs', 'illegal_argument_exception'],
      ['create', 201, 'vector-logs', undefined],
    ]);
    expect(json.items[0]!.index!._id).toBe('a1');
    expect(bus.read('logs', 0, 10).map((m) => m.event.message)).toEqual(['one', 'three']);
  });

  it('throttles per item with 429 when the bus pushes back, so shippers retry exactly those', async () => {
    const { url, bus } = await start({}, { maxLag: 1 });
    let release = () => {};
    const stuck = new Promise<void>((r) => (release = r));
    const consumer = await bus.consume({ group: 'slow', topics: ['logs'], handler: () => stuck });
    await fetch(`${url}/ingest`, { method: 'POST', body: ndjson([{ message: 'a' }]) });
    const res = await fetch(`${url}/_bulk`, {
      method: 'POST',
      body: '{"create":{"_index":"x"}}\n{"message":"b"}\n',
    });
    const json = (await res.json()) as {
      errors: boolean;
      items: Array<{ create: { status: number; error: { type: string } } }>;
    };
    expect(res.status).toBe(200);
    expect(json.items[0]!.create.status).toBe(429);
    expect(json.items[0]!.create.error.type).toBe('es_rejected_execution_exception');
    // How long to wait, as on a 429 of the other endpoints, for a client that reads it.
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    release();
    await consumer.stop();
  });
});

describe('search', () => {
  it('GET /v1/search queries the configured index and validates its parameters', async () => {
    const index = openEmbeddedIndex(join(mkdtempSync(join(tmpdir(), 'drover-idx-')), 'i.db'));
    const { url, bus } = await start({ search: index });
    await fetch(`${url}/ingest`, {
      method: 'POST',
      body: ndjson([
        { message: 'disk full on db-1', 'service.name': 'db', time: 1_700_000_000_000 },
        { message: 'all good', 'service.name': 'db', time: 1_700_000_000_001 },
      ]),
    });
    await index.indexBatch({ topic: 'logs', partition: 0, messages: bus.read('logs', 0, 10) });
    const res = await fetch(`${url}/v1/search?q=disk&service=db&size=5`);
    const json = (await res.json()) as { total: number; events: Array<{ message: string }> };
    expect(json.total).toBe(1);
    expect(json.events[0]!.message).toBe('disk full on db-1');
    expect((await fetch(`${url}/v1/search?size=0`)).status).toBe(400);
    index.close();
  });

  it('needs a read or admin token, never an ingest credential, once any is configured', async () => {
    const index = openEmbeddedIndex(join(mkdtempSync(join(tmpdir(), 'drover-idx-')), 'i.db'));
    const { url } = await start({
      search: index,
      tokens: ['ingest'],
      apiKeys: ['id1:key1'],
      readTokens: ['reader'],
      extraTokens: ['admin'],
    });
    const search = (authorization?: string) =>
      fetch(`${url}/v1/search?q=x`, authorization ? { headers: { authorization } } : {});
    const apiKey = `ApiKey ${Buffer.from('id1:key1').toString('base64')}`;
    for (const refused of [undefined, 'Bearer ingest', apiKey, 'Bearer other']) {
      const res = await search(refused);
      expect(res.status, String(refused)).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect((await search('Bearer reader')).status).toBe(200);
    expect((await search('Bearer admin')).status).toBe(200);
    // A read token does not ingest.
    const ingest = await fetch(`${url}/ingest`, {
      method: 'POST',
      body: ndjson([{ message: 'x' }]),
      headers: { authorization: 'Bearer reader' },
    });
    expect(ingest.status).toBe(401);
    // With only ingest credentials and no read token, nobody but an admin reads.
    const { url: noReaders } = await start({ search: index, tokens: ['ingest'] });
    const res = await fetch(`${noReaders}/v1/search`, {
      headers: { authorization: 'Bearer ingest' },
    });
    expect(res.status).toBe(401);
    index.close();
  });
});

describe('5xx answers', () => {
  it('say nothing of the failure but an id, which the log has with the cause redacted', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
    const failing: SearchIndex = {
      search: () =>
        Promise.reject(
          new Error('connect ECONNREFUSED https://elastic:hunter2@es.internal:9200/_search'),
        ),
    };
    const { url } = await start({ search: failing, logger });
    const res = await fetch(`${url}/v1/search?q=x`);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toMatch(/hunter2|elastic|es\.internal|ECONNREFUSED|at /);
    const answer = JSON.parse(text) as { error: string; id: string };
    expect(answer.error).toMatch(/internal error/);
    expect(answer.id).toMatch(/^[0-9a-f-]{36}$/);
    const logged = lines.map((l) => JSON.parse(l) as { id?: string; err?: { message: string } });
    const entry = logged.find((l) => l.id === answer.id);
    expect(entry?.err?.message).toBe('connect ECONNREFUSED https://***@es.internal:9200/_search');
    expect(lines.join('')).not.toContain('hunter2');
  });
});
