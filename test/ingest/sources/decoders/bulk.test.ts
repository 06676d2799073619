import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type BulkItem,
  BulkStream,
  encodeBulkResponse,
} from '../../../../ingest/sources/decoders/bulk.ts';
import { normalize } from '../../../../ingest/model/index.ts';
import { JsonLineNormalizer } from '../../../../ingest/model/normalize-json.ts';
import { decodeBulk } from './bulk-reference.ts';

/** Items and documents (as the events they become) of a streamed body, cut at `cuts`. */
function streamed(body: Buffer, cuts: number[], index: string | undefined, bytePath: boolean) {
  const options = { receivedAt: 7 };
  const events: Array<[number, string]> = [];
  const reader = new JsonLineNormalizer();
  const stream: BulkStream = new BulkStream(index, {
    parsed: (item, value) => {
      try {
        events.push([stream.items.length - 1, JSON.stringify(normalize(value, options))]);
      } catch (err) {
        item.error = {
          type: 'document_parsing_exception',
          reason: (err as Error).message,
          status: 400,
        };
      }
    },
    read: bytePath
      ? (item, buf, start) => {
          const end = reader.scan(buf, start);
          if (end < 0 || reader.blank) return -1;
          try {
            reader.model(options);
          } catch (err) {
            item.error = {
              type: 'document_parsing_exception',
              reason: (err as Error).message,
              status: 400,
            };
            return end;
          }
          const out = Buffer.alloc(1 << 16);
          events.push([stream.items.length - 1, out.toString('utf8', 0, reader.write(out, 0))]);
          return end;
        }
      : undefined,
  });
  const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const p of [...points, body.length]) {
    stream.push(Buffer.from(body.subarray(from, p)));
    from = p;
  }
  stream.end();
  if (stream.malformed !== undefined) return { malformed: stream.malformed };
  return { items: stream.items, events };
}

/** The same from the whole-body reference decoder. */
function reference(body: Buffer, index: string | undefined) {
  const options = { receivedAt: 7 };
  const items = decodeBulk(body.toString('utf8'), index);
  if (!Array.isArray(items)) return items;
  const events: Array<[number, string]> = [];
  items.forEach((item, i) => {
    if (item.error) return;
    try {
      events.push([i, JSON.stringify(normalize(item.document, options))]);
    } catch (err) {
      item.error = {
        type: 'document_parsing_exception',
        reason: (err as Error).message,
        status: 400,
      };
    }
    delete item.document;
  });
  return { items, events };
}

const actionLine = fc.oneof(
  fc.constantFrom(
    '{"index":{}}',
    '{"create":{"_index":"logs-app"}}',
    '{"index":{"_index":"filebeat-8","_id":"a1"}}',
    '{ "create" : { } }',
    '{"delete":{"_id":"x"}}',
    '{"update":{"_id":"y"}}',
    '{"frobnicate":{}}',
    '{"index":',
    'not json',
    '{"index":1}',
    '{}',
    '[]',
    '{"index":{},"create":{}}',
    '',
    '  ',
  ),
);
const documentLine = fc.oneof(
  fc.constantFrom(
    '{"message":"hello","log.level":"info","service":{"name":"api"}}',
    '{"@timestamp":"2024-11-22T10:00:00Z","metric.name":"m","metric.value":1}',
    '{"metric.name":"m","metric.value":"x"}',
    '{"msg":"a\\nb","level":50,"time":1732272000123,"tags":["x"]}',
    '{"a":1,"a":2}',
    '{"broken":',
    '[1,2]',
    '',
    ' ',
  ),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
);

describe('_bulk decoded as it streams in', () => {
  it('gives the items, errors and events of the whole-body decoder, however cut, either way', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(actionLine, fc.option(documentLine)), { maxLength: 8 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.option(fc.constant('vector-logs')),
        fc.boolean(),
        (pairs, trailingNewline, cuts, index, bytePath) => {
          const lines = pairs.flatMap(([a, d]) => (d === null ? [a] : [a, d]));
          const body = Buffer.from(lines.join('\n') + (trailingNewline ? '\n' : ''));
          const defaultIndex = index ?? undefined;
          expect(streamed(body, cuts, defaultIndex, bytePath)).toEqual(
            reference(body, defaultIndex),
          );
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('takes the documents of a Filebeat-shaped bulk by the byte path', () => {
    const doc = JSON.stringify({
      '@timestamp': '2024-11-22T10:00:00.123Z',
      message: '{"level":30,"msg":"served"}',
      log: { file: { path: '/var/log/app.log' }, offset: 1234 },
      host: { name: 'node-1' },
      agent: { type: 'filebeat', version: '8.11.0' },
      ecs: { version: '8.0.0' },
      input: { type: 'filestream' },
    });
    const body = Buffer.from(`${'{"create":{"_index":"filebeat-8.11.0"}}\n'}${doc}\n`.repeat(3));
    let byBytes = 0;
    const reader = new JsonLineNormalizer();
    const stream = new BulkStream(undefined, {
      parsed: () => {
        throw new Error('every document should take the byte path');
      },
      read: (_item, buf, start) => {
        const end = reader.scan(buf, start);
        if (end >= 0) byBytes++;
        return end;
      },
    });
    stream.push(body);
    stream.end();
    expect(byBytes).toBe(3);
    expect(stream.items.map((i) => [i.action, i.index, i.error])).toEqual(
      Array(3).fill(['create', 'filebeat-8.11.0', undefined]),
    );
  });
});

describe('the _bulk response', () => {
  /** The response as the server built it before, object by object. */
  function asObjects(items: BulkItem[], took: number, receivedAt: number) {
    return {
      took,
      errors: items.some((i) => i.error),
      items: items.map((item, i) => {
        const action = item.action === 'unknown' ? 'index' : item.action;
        const common = {
          _index: item.index ?? 'drover',
          _id: item.id ?? `drover-${receivedAt}-${i}`,
        };
        if (item.error)
          return {
            [action]: {
              ...common,
              status: item.error.status,
              error: { type: item.error.type, reason: item.error.reason },
            },
          };
        return {
          [action]: {
            ...common,
            _version: 1,
            result: 'created',
            _shards: { total: 1, successful: 1, failed: 0 },
            _seq_no: i,
            _primary_term: 1,
            status: 201,
          },
        };
      }),
    };
  }

  it('is, as JSON, the response Elasticsearch gives: each item under its action, in order', () => {
    const item: fc.Arbitrary<BulkItem> = fc.record(
      {
        action: fc.constantFrom('index', 'create', 'update', 'delete', 'unknown'),
        index: fc.option(fc.string({ unit: 'grapheme' }), { nil: undefined }),
        id: fc.option(fc.string({ unit: 'binary' }), { nil: undefined }),
        error: fc.option(
          fc.record({
            type: fc.constantFrom('parse_exception', 'es_rejected_execution_exception'),
            reason: fc.string({ unit: 'binary' }),
            status: fc.constantFrom(400, 429),
          }),
          { nil: undefined },
        ),
      },
      { requiredKeys: ['action', 'index', 'id'] },
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 6 }), fc.nat(), (items, took) => {
        const text = encodeBulkResponse(items, took, 1700000000000);
        expect(JSON.parse(text)).toEqual(asObjects(items, took, 1700000000000));
      }),
      { numRuns: 1_000 },
    );
  });
});
