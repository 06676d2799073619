import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NdjsonStream } from '../../../ingest/sources/decoders/ndjson.ts';
import { normalize } from '../../../ingest/model/index.ts';
import { JsonLineNormalizer, stringSlotOf } from '../../../ingest/model/normalize-json.ts';
import { FIELD_NAMES } from './field-names.ts';

/**
 * The byte path must give, for every line it takes, exactly what the object path gives
 * (JSON.stringify(normalize(JSON.parse(line)))), and must hand back every line it cannot
 * read that way. These tests write JSON text in many spellings (blanks, escapes, number
 * forms, duplicate and odd keys, broken text) and compare the two.
 */

const NAMES = [
  ...FIELD_NAMES,
  'a',
  'b',
  '',
  ' spaced key ',
  'tags',
  // Read the object way: array indexes, the prototype's name, non-ASCII and escapes.
  '0',
  '17',
  '__proto__',
  'clé',
  'quote"d',
];

const STACK = `TypeError: boom for order 12
    at chargeCard (/srv/app/lib/pay.js:10:5)
    at handle (/srv/app/lib/http.js:20:7)`;

type Json =
  | { kind: 'string'; value: string }
  | { kind: 'number'; text: string }
  | { kind: 'literal'; text: 'true' | 'false' | 'null' }
  | { kind: 'array'; items: Json[] }
  | { kind: 'object'; members: Array<[string, Json]> };

const numberText = fc.oneof(
  fc.integer().map(String),
  fc.constantFrom(
    '0',
    '-0',
    '1732272000123',
    '1732272000',
    '50',
    '30',
    '1.5',
    '1.0',
    '-12.250',
    '1e3',
    '1E+3',
    '2.5e-3',
    '-0.0',
    '123456789012345',
    '1234567890123456',
    '12345678901234567890',
    '1e400',
    '-1e400',
    '0.1',
    '5e-324',
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
);

const stringValue = fc.oneof(
  fc.constantFrom(
    '',
    'web-1',
    'checkout',
    'error',
    'WARNING',
    '30',
    '2024-11-22T10:00:00.123Z',
    '1732272000123456789',
    STACK,
    'é語🚀',
    '\u2028',
    '\ud800',
    'a"b\\c/d',
    '\u0000\u001f\u007f',
  ),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ maxLength: 12 }),
);

/** JSON trees whose keys may repeat and include the ones the byte path hands back. */
const json = tree(NAMES, false);
/** Trees the byte path should read: plain keys, each once per object. */
const plainJson = tree(
  NAMES.filter((n) => !['0', '17', '__proto__', 'clé', 'quote"d', 'a.b'].includes(n)),
  true,
);

function tree(names: string[], unique: boolean): fc.Arbitrary<Json> {
  const member = (value: fc.Arbitrary<unknown>) =>
    fc.tuple(fc.constantFrom(...names), value as fc.Arbitrary<Json>);
  return fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      stringValue.map((value) => ({ kind: 'string' as const, value })),
      numberText.map((text) => ({ kind: 'number' as const, text })),
      fc.constantFrom('true', 'false', 'null').map((text) => ({ kind: 'literal' as const, text })),
      fc
        .array(tie('value') as fc.Arbitrary<Json>, { maxLength: 3 })
        .map((items) => ({ kind: 'array' as const, items })),
      tie('object'),
    ),
    object: (unique
      ? fc.uniqueArray(member(tie('value')), { maxLength: 8, selector: ([k]) => k })
      : fc.array(member(tie('value')), { maxLength: 8 })
    ).map((members) => ({ kind: 'object' as const, members })),
  })).object;
}

/** A seeded choice of spelling, so one tree is written many ways. */
function spelling(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const blank = () => ['', '', '', ' ', '\t', '\r', '  '][Math.floor(next() * 7)]!;
  const str = (v: string) => {
    if (next() < 0.7) return JSON.stringify(v);
    // Escape some characters that need none, and write others raw where JSON allows.
    let out = '"';
    for (const ch of v) {
      const c = ch.charCodeAt(0);
      const r = next();
      if (ch === '"' || ch === '\\' || c < 0x20) out += JSON.stringify(ch).slice(1, -1);
      else if (ch.length === 2 || (c >= 0xd800 && c <= 0xdfff))
        out +=
          r < 0.5
            ? ch
            : JSON.stringify(ch)
                .slice(1, -1)
                .replace(/^(?!\\)/, '');
      else if (r < 0.2) out += `\\u${c.toString(16).padStart(4, '0')}`;
      else if (r < 0.3) out += `\\u${c.toString(16).padStart(4, '0').toUpperCase()}`;
      else if (ch === '/' && r < 0.5) out += '\\/';
      else out += ch;
    }
    return `${out}"`;
  };
  // Keys are seldom escaped by shippers (and escaped keys go the object way).
  const key = (k: string) => (next() < 0.05 ? str(k) : JSON.stringify(k));
  const write = (j: Json): string => {
    switch (j.kind) {
      case 'string':
        return str(j.value);
      case 'number':
      case 'literal':
        return j.text;
      case 'array':
        return `[${blank()}${j.items.map((i) => write(i) + blank()).join(`,${blank()}`)}]`;
      case 'object':
        return `{${blank()}${j.members
          .map(([k, v]) => `${key(k)}${blank()}:${blank()}${write(v)}${blank()}`)
          .join(`,${blank()}`)}}`;
    }
  };
  return { write, blank, next };
}

/** What the object path makes of a line: the event's bytes and where it goes, or why not. */
function objectWay(line: string, options: { receivedAt: number; service?: string }) {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { invalid: true };
  }
  try {
    const event = normalize(value, options);
    return {
      json: Buffer.from(JSON.stringify(event)),
      metric: event['metric.name'] !== undefined,
      key: event['service.name'] ?? event['host.name'] ?? '',
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const reader = new JsonLineNormalizer();

/**
 * The event the reader writes for the line it last scanned and modelled. It is asked
 * first into a buffer too small (a batch's may be), which must stay untouched past its
 * end and learn the size needed, then into one that fits.
 */
function written(reader: JsonLineNormalizer): Buffer {
  const small = Buffer.alloc(48, 0xee);
  const room = Buffer.from(small.buffer, small.byteOffset, 48).subarray(0, 16);
  const needed = reader.write(room, 3) - 3;
  expect(small.subarray(16).every((b) => b === 0xee)).toBe(true);
  const out = Buffer.alloc(needed + 5);
  expect(reader.write(out, 5)).toBe(needed + 5);
  return out.subarray(5);
}

/** What the byte path makes of it: the same, or undefined when it hands the line back. */
function byteWay(bytes: Buffer, options: { receivedAt: number; service?: string }) {
  const end = reader.scan(bytes, 0);
  if (end < 0) return undefined;
  expect(end).toBe(bytes.length - 1);
  if (reader.blank) return { blank: true };
  try {
    reader.model(options);
  } catch (err) {
    return { error: (err as Error).message };
  }
  // Bytes, not text: invalid UTF-8 written out would decode to the same text.
  return { json: written(reader), metric: reader.metric, key: reader.key };
}

describe('the byte path’s string scan, four bytes at a time', () => {
  // scanString reads strings a 32-bit word at a time and drops to bytes at the first word
  // holding a quote, a backslash, a control byte or a non-ASCII byte: each of those is put
  // at every position of a word (strings of 0 to 9 plain bytes before it, lines at every
  // offset of their buffer), in model values and kept values, and the event must be the
  // object path's byte for byte, or the line handed back exactly when JSON.parse refuses it.
  // (First in this file: the fields a process keeps are bounded, and past that bound a new
  // key, such as `note` here, sends its line the object way, which would hide the scan.)
  const specials: Array<[string, Buffer]> = [
    ['an escaped quote', Buffer.from('\\"')],
    ['an escaped backslash', Buffer.from('\\\\')],
    ['an escaped slash', Buffer.from('\\/')],
    ...['b', 'f', 'n', 'r', 't'].map((e): [string, Buffer] => [`\\${e}`, Buffer.from(`\\${e}`)]),
    ['a \\u escape', Buffer.from('\\u00e9')],
    ['an upper-case \\u escape', Buffer.from('\\u00E9')],
    ['a lone high surrogate', Buffer.from('\\ud800')],
    ['a lone low surrogate', Buffer.from('\\udc00x')],
    ['a surrogate pair', Buffer.from('\\ud83d\\ude80')],
    ['a reversed pair', Buffer.from('\\ude80\\ud83d')],
    ['a bad escape', Buffer.from('\\x')],
    ['a short \\u escape', Buffer.from('\\u12"')],
    ['DEL, which JSON allows raw', Buffer.from([0x7f])],
    ['a space', Buffer.from(' ')],
    ['é', Buffer.from('é')],
    ['語', Buffer.from('語')],
    ['🚀', Buffer.from('🚀')],
    ['U+2028', Buffer.from('\u2028')],
    ['0xff', Buffer.from([0xff])],
    ['0x80 alone', Buffer.from([0x80])],
    ['a cut 3-byte sequence', Buffer.from([0xe2, 0x82])],
    ['an overlong slash', Buffer.from([0xc0, 0xaf])],
    ['an encoded surrogate', Buffer.from([0xed, 0xa0, 0x80])],
    ['a cut 4-byte sequence', Buffer.from([0xf0, 0x9f, 0x9a])],
    ...[0x00, 0x01, 0x09, 0x0a, 0x0d, 0x1f].map((c): [string, Buffer] => [
      `raw control 0x${c.toString(16)}`,
      Buffer.from([c]),
    ]),
  ];
  const members = ['msg', 'service.name', 'hostname', '@timestamp', 'metric.type', 'note', 'req'];

  function check(line: Buffer, offset: number, what: string) {
    // The line at `offset` of its buffer, after bytes of another, as a body carries it.
    const lead = Buffer.from('{"a":1}\n').subarray(0, offset);
    const bytes = Buffer.concat([lead, line, Buffer.from('\n')]);
    const options = { receivedAt: 42 };
    const expected = objectWay(line.toString('utf8'), options);
    const end = reader.scan(bytes, offset);
    if ('invalid' in expected) {
      expect(end, what).toBe(-1);
      return;
    }
    expect(end, what).toBe(bytes.length - 1);
    let got: { json?: Buffer; metric?: boolean; key?: string; error?: string };
    try {
      reader.model(options);
      got = { json: written(reader), metric: reader.metric, key: reader.key };
    } catch (err) {
      got = { error: (err as Error).message };
    }
    // Buffers compared whole (a deep comparison of a megabyte goes element by element).
    const { json, ...rest } = got;
    const { json: expectedJson, ...expectedRest } = expected as typeof got;
    expect(rest, what).toEqual(expectedRest);
    expect(json === undefined ? json : json.equals(expectedJson!), what).toBe(
      expectedJson === undefined ? undefined : true,
    );
  }

  it('gives the object path’s event for every special byte at every place in a word', () => {
    for (const [name, special] of specials)
      for (const member of members)
        for (let before = 0; before <= 9; before++)
          for (const after of [0, 3]) {
            const value = Buffer.concat([
              Buffer.from('"'),
              Buffer.from('abcdefghi'.slice(0, before)),
              special,
              Buffer.from('jklmno'.slice(0, after)),
              Buffer.from('"'),
            ]);
            const line = Buffer.concat([
              Buffer.from(`{"level":30,"time":1732272000123,"name":"web",`),
              Buffer.from(member === 'req' ? '"req":{"url":' : `"${member}":`),
              value,
              Buffer.from(member === 'req' ? '},"x":"y"}' : ',"x":"y"}'),
            ]);
            for (const offset of [0, 1, 2, 3])
              check(line, offset, `${name} after ${before} bytes in ${member}, at ${offset}`);
          }
  });

  it('reads very long strings, with what ends them or must be noted at their end', () => {
    for (const length of [4096, 65_537, 1 << 20])
      for (const [name, special] of specials.filter((_, i) => i % (length > 65_537 ? 9 : 3) === 0))
        for (const member of ['msg', 'note']) {
          const value = Buffer.concat([
            Buffer.from('"'),
            Buffer.alloc(length, 'a'),
            special,
            Buffer.from('"'),
          ]);
          const line = Buffer.concat([Buffer.from(`{"${member}":`), value, Buffer.from('}')]);
          check(line, 1, `${name} after ${length} bytes in ${member}`);
        }
  });

  it('reads the same reader’s lines from buffers that change, and from one reused', () => {
    // The four-byte view follows the buffer scan is given: a line read from a new
    // buffer, then the old one again, must each be read from their own bytes.
    const a = Buffer.from('{"msg":"first message","x":"aaaa"}\n');
    const b = Buffer.from('{"msg":"other message","x":"bbbb"}\n');
    for (const bytes of [a, b, a, Buffer.from(a), b]) {
      const line = bytes.toString('utf8', 0, bytes.length - 1);
      expect(byteWay(bytes, { receivedAt: 1 })).toEqual(objectWay(line, { receivedAt: 1 }));
    }
  });
});

describe('the byte path’s copies and comparisons, four bytes at a time', () => {
  // Names, values kept as sent and model values are copied a 32-bit word at a time and the
  // last one to three bytes alone; keys and the string table's values are compared the
  // same way. Each is put at every length across a few words and past the 64 bytes from
  // which a value is copied natively, at every offset of the line's buffer and of the
  // buffer written into, and the event must be the object path's byte for byte.
  const options = { receivedAt: 42 };
  const text = (n: number, seed: number) =>
    Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + seed) % 26))).join('');

  function both(line: string, lineAt: number, outAt: number, what: string) {
    const lead = Buffer.from('{"a":1}\n').subarray(0, lineAt);
    const bytes = Buffer.concat([lead, Buffer.from(`${line}\n`)]);
    const expected = objectWay(line, options);
    expect(reader.scan(bytes, lineAt), what).toBe(bytes.length - 1);
    reader.model(options);
    // The model's strings are the table's; the event copies the line's bytes, the key not.
    const { key, metric } = expected as { key: string; metric: boolean };
    expect({ key: reader.key, metric: reader.metric }, what).toEqual({ key, metric });
    const needed = reader.write(Buffer.alloc(0), 0);
    const out = Buffer.alloc(outAt + needed + 3, 0xee);
    expect(reader.write(out.subarray(0, outAt + needed), outAt), what).toBe(outAt + needed);
    expect(
      out.subarray(0, outAt).every((b) => b === 0xee),
      what,
    ).toBe(true);
    expect(
      out.subarray(outAt + needed).every((b) => b === 0xee),
      what,
    ).toBe(true);
    expect(
      out.subarray(outAt, outAt + needed).equals((expected as { json: Buffer }).json),
      what,
    ).toBe(true);
  }

  it('writes names, kept values and model values of every length at every alignment', () => {
    for (let n = 1; n <= 70; n++)
      for (const at of [0, 1, 2, 3]) {
        const value = text(n, at);
        const name = `k${text(n % 11, n)}`;
        // A kept value at the root and nested (a name made of two keys), a model value
        // from the string table (up to 48 bytes) and past it, a number kept as sent.
        const line =
          `{"level":30,"time":1732272000123,"name":"${value}","hostname":"h${value}",` +
          `"msg":"${value}","${name}":"${value}","o":{"${name}":"${value}"},"n${name}":${n}}`;
        both(line, at, (at + n) % 4, `${n} bytes at ${at}`);
      }
  });

  it('tells keys apart that differ in any byte, and reads a key cut by the buffer’s end', () => {
    // The key expected next (the one that followed last time) is compared word by word:
    // keys one byte off from it, at every place, must be read as the keys they are.
    for (const n of [1, 3, 4, 5, 8, 9, 13]) {
      const expectedKey = `e${text(n, 3)}`;
      const seen = `{"msg":"m","${expectedKey}":1}`;
      for (let i = 0; i <= expectedKey.length; i++) {
        const other =
          i === expectedKey.length
            ? `${expectedKey}x`
            : `${expectedKey.slice(0, i)}${expectedKey[i] === 'z' ? 'y' : 'z'}${expectedKey.slice(i + 1)}`;
        for (const line of [
          seen,
          `{"msg":"m","${other}":2}`,
          seen,
          `{"msg":"m","${expectedKey.slice(0, i)}":3}`,
        ])
          both(line, i % 4, 0, `${other} after ${expectedKey}`);
      }
    }
    // A line whose key is shorter than the one expected, at the very end of its buffer:
    // the comparison must not read past the buffer (a DataView would throw).
    const long = `{"a":1,"${text(40, 1)}":2}\n`;
    const short = Buffer.from('{"a":1,"b":2}\n');
    expect(reader.scan(Buffer.from(long), 0)).toBeGreaterThan(0);
    expect(byteWay(short, options)).toEqual(objectWay('{"a":1,"b":2}', options));
  });

  it('hands back the string table’s value only for the same bytes, in a slot they share', () => {
    // Two values of the same length that differ in one byte only (the first, one in the
    // middle, the last of the words, each of the last one to three) and share the table's
    // slot, found by trying the bytes JSON strings hold plainly at that place: the second
    // line must not get the first's string.
    const plain = Array.from({ length: 0x7f - 0x20 }, (_, i) =>
      String.fromCharCode(0x20 + i),
    ).filter((c) => c !== '"' && c !== '\\');
    let pairs = 0;
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 31, 47, 48])
      for (const place of new Set([0, n >> 1, (n & ~3) - 1, n - 3, n - 2, n - 1]))
        if (place >= 0)
          search: for (let prefix = 0; prefix < 40; prefix++) {
            const base = text(n, prefix).split('');
            const bySlot = new Map<number, string>();
            for (const c of plain) {
              base[place] = c;
              const value = base.join('');
              const other = bySlot.get(stringSlotOf(value));
              if (other === undefined) {
                bySlot.set(stringSlotOf(value), value);
                continue;
              }
              for (const v of [other, value, other]) {
                const line = `{"level":30,"time":1732272000123,"name":${JSON.stringify(v)},"msg":${JSON.stringify(v)}}`;
                both(line, 0, 0, `${v} after a value in its slot`);
              }
              pairs++;
              break search;
            }
          }
    // The search is deterministic (the hash is not seeded): it finds 33 such pairs.
    expect(pairs).toBeGreaterThanOrEqual(30);
  });

  it('hands back the string table’s value only for the same bytes, whatever byte differs', () => {
    // Values of 1 to 48 bytes differing from one another in one byte at each place (the
    // first word, a middle one, the last one to three bytes): many share a slot, and each
    // event must carry its own value.
    for (const n of [1, 2, 3, 4, 5, 7, 8, 11, 16, 17, 31, 47, 48])
      for (let place = 0; place < n; place++)
        for (let c = 0; c < 40; c++) {
          const chars = text(n, 5).split('');
          chars[place] = String.fromCharCode(48 + c);
          const value = chars.join('');
          const line = `{"level":30,"time":1732272000123,"name":"${value}","hostname":"${value}","msg":"${value}"}`;
          both(line, c % 4, 0, `${value}`);
        }
  });
});

describe('the byte path of normalize', () => {
  it('gives exactly the object path’s event for every line it takes, and takes no invalid JSON', () => {
    let plainTaken = 0;
    let plainRuns = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          json.map((t) => ({ t, plain: false })),
          plainJson.map((t) => ({ t, plain: true })),
        ),
        fc.integer(),
        fc.option(fc.constantFrom('web', 'api')),
        fc.option(fc.tuple(fc.nat(), fc.constantFrom('', '}', ',', '"', 'x', ':', '\\', ' {'))),
        ({ t, plain }, seed, service, breakage) => {
          const { write, blank } = spelling(seed);
          let line = `${blank()}${write(t)}${blank()}`;
          if (breakage) {
            const [at, insert] = breakage;
            const i = at % (line.length + 1);
            line = line.slice(0, i) + insert + line.slice(i + (insert === '' ? 1 : 0));
          }
          const options = { receivedAt: 42, ...(service !== null && { service }) };
          // Both read the same bytes (a cut may have split a surrogate pair: UTF-8 has
          // no lone surrogates, so the text to compare with is the bytes decoded).
          const bytes = Buffer.from(`${line}\n`);
          const expected = objectWay(bytes.toString('utf8', 0, bytes.length - 1), options);
          const got = byteWay(bytes, options);
          if (plain && !breakage) plainRuns++;
          if (got === undefined) return;
          if (plain && !breakage) plainTaken++;
          if ('blank' in got) expect(expected).toEqual({ invalid: true });
          else expect(got).toEqual(expected);
        },
      ),
      { numRuns: 5_000 },
    );
    // The point is speed: lines of plain keys take the byte path (but for a name spelt
    // both flat and nested, as `log.level` and `log: {level}`).
    expect(plainTaken / plainRuns).toBeGreaterThan(0.8);
  });

  it('reads the shapes shippers send without handing them back', () => {
    const lines = [
      // pino, with an error and its stack
      '{"level":50,"time":1732272000123,"pid":42,"hostname":"web-1","name":"web","msg":"boom","err":{"type":"TypeError","message":"x","stack":"TypeError: x\\n    at f (/a.js:1:2)"},"req":{"id":"r-1","url":"/api"}}',
      // ECS, as Filebeat writes it, nested and flat
      '{"@timestamp":"2024-11-22T10:00:00.123Z","log.level":"warn","message":"slow","service":{"name":"api"},"host":{"name":"node-1","hostname":"pod-7"},"ecs":{"version":"8.11.0"},"tags":["beats_input"],"agent":{"type":"filebeat","version":"8.11.0"}}',
      // a metric sample
      '{"@timestamp":"2024-11-22T10:00:00Z","service.name":"api","metric.name":"latency","metric.value":12.5,"metric.type":"gauge"}',
      // blanks everywhere JSON allows them, CRLF
      ' { "msg" : "x" , "level" : 30 } \r',
      // non-ASCII text and escapes
      '{"msg":"café \\u2603 \\"quoted\\"","user":{"name":"Zoë"}}',
    ];
    for (const line of lines) {
      const options = { receivedAt: 42 };
      const got = byteWay(Buffer.from(`${line}\n`), options);
      expect(got, line).toBeDefined();
      expect(got).toEqual(objectWay(line, options));
    }
  });

  it('writes every level and model member byte for byte, and nothing past a buffer cut at any byte', () => {
    // The model's names and the six levels are constant bytes copied in whole: each is
    // checked against the object path, and written into buffers ending at every byte of
    // the event, which must learn the size needed and keep everything outside them.
    const lines = [
      ...['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map(
        (level) => `{"log.level":"${level}","message":"m","service.name":"s","host.name":"h"}`,
      ),
      ...[10, 20, 30, 40, 50, 60].map((level) => `{"level":${level},"time":1732272000123,"pid":7}`),
      '{"@timestamp":"2024-11-22T10:00:00Z","service.name":"api","host.name":"n","metric.name":"latency","metric.value":12.5,"metric.type":"counter","tags":["a"]}',
      `{"time":1732272000123,"err":{"type":"TypeError","message":"x","stack":${JSON.stringify(STACK)}},"user":{"name":"${'u'.repeat(80)}"}}`,
      '{"error.fingerprint":"f00d","message":"m"}',
    ];
    for (const line of lines) {
      const options = { receivedAt: 42 };
      const got = byteWay(Buffer.from(`${line}\n`), options);
      expect(got, line).toEqual(objectWay(line, options));
      const whole = (got as { json: Buffer }).json;
      for (let size = 0; size <= whole.length; size++) {
        // A view from an odd offset of its memory, written from an odd position in it.
        const out = Buffer.alloc(whole.length + 12, 0xee);
        const room = out.subarray(3, 3 + 1 + size);
        expect(reader.write(room, 1)).toBe(1 + whole.length);
        expect(out.subarray(0, 4).every((b) => b === 0xee)).toBe(true);
        expect(out.subarray(4 + size).every((b) => b === 0xee)).toBe(true);
        if (size === whole.length) expect(room.subarray(1).equals(whole)).toBe(true);
      }
    }
  });

  it("gives each line its own values when more short values pass than the reader's string table holds", () => {
    // The byte path hands back a string it decoded before for the same bytes (a table
    // of 4,096 by hash, normalize-json.ts): 20,000 services, hosts and messages of the
    // same few lengths, so that many share a slot, in one order and then another, and
    // one value of exactly the largest length taken from the table and one past it.
    const values = Array.from({ length: 20_000 }, (_, i) => `s${String(i).padStart(5, '0')}`);
    const order = [...values, ...values.map((_, i) => values[(i * 7919) % values.length]!)];
    const long = ['x'.repeat(48), 'y'.repeat(49), 'x'.repeat(48), 'y'.repeat(49)];
    for (const v of [...order, ...long]) {
      const line = `{"level":30,"time":1732272000123,"name":"${v}","hostname":"${v}-h","msg":"m${v}"}`;
      const options = { receivedAt: 42 };
      const got = byteWay(Buffer.from(`${line}\n`), options);
      expect(got, line).toEqual(objectWay(line, options));
    }
  });

  it('hands back what JSON.parse would order or read differently', () => {
    for (const line of [
      '{"a":1,"b":2,"a":3}', // a key twice
      '{"a":{"b":1},"a.b":2}', // one name, two spellings
      '{"b":1,"7":2}', // an array index: first in a parsed object
      '{"__proto__":{"x":1}}',
      '{"clé":1}', // a non-ASCII key
      '{"a\\u0062":1}', // an escaped key
      '[{"a":1}]',
      '"text"',
      '{"a":1}x',
      '{"a":01}',
      '{"a":1,}',
      '{"a":"\t"}', // a raw control character
      `${'{"a":'.repeat(70)}1${'}'.repeat(70)}`, // nested deeper than the byte path goes
    ]) {
      expect(byteWay(Buffer.from(`${line}\n`), { receivedAt: 1 }), line).toBeUndefined();
    }
  });

  it('decodes invalid UTF-8 inside strings as the text decoder does (U+FFFD)', () => {
    const bytes = Buffer.concat([
      Buffer.from('{"msg":"a'),
      Buffer.from([0xff, 0xe2, 0x82]),
      Buffer.from('b","x":"'),
      Buffer.from([0xc3]),
      Buffer.from('"}\n'),
    ]);
    const options = { receivedAt: 1 };
    expect(byteWay(bytes, options)).toEqual(
      objectWay(bytes.toString('utf8', 0, bytes.length - 1), options),
    );
  });

  it('in a stream, gives the records and errors of the text way, line for line', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.tuple(json, fc.integer()).map(([t, seed]) => spelling(seed).write(t)),
            fc.constantFrom('', '  ', 'not json', '{"a":', '[1]', '{"metric.name":"m"}'),
          ),
          { maxLength: 10 },
        ),
        fc.array(fc.nat(), { maxLength: 6 }),
        (lines, cuts) => {
          const body = Buffer.from(`${lines.join('\n')}\n`);
          const options = { receivedAt: 42 };
          const run = (bytePath: boolean) => {
            const out: unknown[] = [];
            const objectRecord = (line: number, value: unknown) => {
              try {
                out.push([line, Buffer.from(JSON.stringify(normalize(value, options)))]);
              } catch (err) {
                out.push([line, 'rejected', (err as Error).message]);
              }
            };
            const stream = new NdjsonStream(
              objectRecord,
              (line, error) => out.push([line, 'invalid', error]),
              bytePath
                ? (buf, start, line) => {
                    const end = reader.scan(buf, start);
                    if (end < 0 || reader.blank) return end;
                    try {
                      reader.model(options);
                      out.push([line, written(reader)]);
                    } catch (err) {
                      out.push([line, 'rejected', (err as Error).message]);
                    }
                    return end;
                  }
                : undefined,
            );
            const points = [...new Set(cuts.map((c) => c % body.length))].sort((a, b) => a - b);
            let from = 0;
            for (const p of [...points, body.length]) {
              stream.push(Buffer.from(body.subarray(from, p)));
              from = p;
            }
            stream.end();
            return out;
          };
          expect(run(true)).toEqual(run(false));
        },
      ),
      { numRuns: 1_000 },
    );
  });
});

describe('several byte readers in one process', () => {
  it('do not take one another’s marks on the shared fields for duplicate keys', () => {
    const a = new JsonLineNormalizer();
    const b = new JsonLineNormalizer();
    const withUser = Buffer.from('{"msg":"x","user":"u"}\n');
    const without = Buffer.from('{"msg":"x"}\n');
    // Reader a marks "user" on its 50th line; reader b meets it again on its own 50th.
    for (let i = 0; i < 50; i++) expect(a.scan(withUser, 0)).toBeGreaterThan(0);
    for (let i = 0; i < 49; i++) expect(b.scan(without, 0)).toBeGreaterThan(0);
    expect(b.scan(withUser, 0)).toBeGreaterThan(0);
  });
});
