import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fingerprint, parseStack } from '../../../ingest/model/index.ts';

/**
 * The fingerprint corpus: stack traces as JVM (Spring, Hibernate, Kotlin coroutines),
 * CPython, Go, Node.js, .NET and Ruby print them, one directory per bug, each holding
 * occurrences from other hosts, requests and deploys. `THROWING` names, per bug, the
 * function that threw; renaming it makes another bug.
 */
const CORPUS = new URL('./fingerprint-corpus/', import.meta.url);

const THROWING: Record<string, string> = {
  'dotnet-async-order': 'RateFor',
  'dotnet-inner-refund': 'RefundAsync',
  'go-concurrent-map': 'process',
  'go-index-refund': 'Refund',
  'go-nil-customer': 'Charge',
  'java-hibernate-lazy': 'recipientFor',
  'java-kotlin-coroutine': 'book',
  'java-spring-order-cancel': 'cancelOrder',
  'java-spring-order-save': 'saveOrder',
  'java-suppressed-close': 'writePart',
  'node-async-invoice': 'formatTotal',
  'node-async-invoice-pdf': 'renderPdf',
  'node-bundled-cart': 'toIsoDay',
  'python-chained-payment': 'capture_payment',
  'python-chained-refund': 'refund_payment',
  'python-during-handling-config': 'get_setting',
  'python-taskgroup-fetch': 'fetch_account',
  'ruby-rails-checkout': 'shipping_for',
  'ruby-rails-coupon': 'discount_for',
};

const bugs = readdirSync(CORPUS)
  .sort()
  .map((bug) => ({
    bug,
    stacks: readdirSync(new URL(`${bug}/`, CORPUS))
      .sort()
      .map((name) => ({ name, text: readFileSync(new URL(`${bug}/${name}`, CORPUS), 'utf8') })),
  }));

/** mulberry32: the variations below draw from one seed fast-check picks. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Another occurrence of the same bug: each varying part (message, id, address, line,
 * host, goroutine, hex id, generated-class suffix, version, deploy path) is redrawn
 * or left, at random.
 */
function sameBug(text: string, seed: number): string {
  const rnd = random(seed);
  const int = (max: number) => Math.floor(rnd() * max);
  const hex = (n: number) => Array.from({ length: n }, () => '0123456789abcdef'[int(16)]).join('');
  const word = () =>
    Array.from({ length: 1 + int(12) }, () => 'abcdefghijklmnopqrstuvwxyz'[int(26)]).join('');
  const message = () =>
    Array.from({ length: 1 + int(8) }, () =>
      int(3) === 0 ? String(int(100_000)) : int(5) === 0 ? `'${word()}'` : word(),
    ).join(' ');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
  const maybe = (re: RegExp, make: (...m: string[]) => string) => (s: string) =>
    s.replace(re, (...m: string[]) => (int(2) === 0 ? m[0]! : make(...m)));
  const steps = [
    // messages: first line, Java causes, .NET inner exceptions, Python's raised lines, Ruby
    maybe(
      /^((?:[^:\n]*?\s)?[\w.$]+(?:Exception|Error|panic)): .*$/m,
      (_, t) => `${t}: ${message()}`,
    ),
    maybe(/^(Caused by: [\w.$]+): .*$/gm, (_, t) => `${t}: ${message()}`),
    maybe(/^( ---> [\w.]+): .*$/gm, (_, t) => `${t}: ${message()}`),
    maybe(
      /^((?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Violation)): .*$/gm,
      (_, t) => `${t}: ${message()}`,
    ),
    maybe(/^(\S+:\d+:in [`'][^']*'): .* (\(\w+\))$/m, (_, f, t) => `${f}: ${message()} ${t}`),
    maybe(/^(DETAIL| {2}Detail): .*$/gm, (_, t) => `${t}: ${message()}`),
    // ids, addresses, generated classes, hosts
    maybe(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, uuid),
    maybe(/0x[0-9a-f]+/g, () => `0x${hex(1 + int(12))}`),
    maybe(/goroutine \d+/g, () => `goroutine ${int(100_000)}`),
    maybe(
      /\$\$(EnhancerBySpringCGLIB|FastClassBySpringCGLIB)\$\$[0-9a-f]{8}/g,
      (_, k) => `$$${k}$$${hex(8)}`,
    ),
    maybe(/GeneratedMethodAccessor\d+/g, () => `GeneratedMethodAccessor${int(5000)}`),
    maybe(/\$HibernateProxy\$\w+/g, () => `$HibernateProxy$${hex(8)}`),
    maybe(/CoroutineId\(\d+\)|coroutine#\d+|@[0-9a-f]{8}\b/g, (m) =>
      m.replace(/[0-9a-f]{8}|\d+/, String(int(1e6))),
    ),
    maybe(/d__\d+|DisplayClass\d+_\d+/g, (m) => m.replace(/\d+/, String(int(40)))),
    maybe(/\b(static|api|web|worker)-\d+/g, (_, k) => `${k}-${int(100)}`),
    maybe(/\.\.\. \d+ (more|common frames omitted)/g, (_, k) => `... ${int(200)} ${k}`),
    // line numbers and columns
    maybe(
      /\.(java|kt|go|cs|rb|mjs|js):\d+(:\d+)?/g,
      (_, ext, col) => `.${ext}:${1 + int(3000)}${col ? `:${1 + int(200)}` : ''}`,
    ),
    maybe(/:line \d+|, line \d+/g, (m) => m.replace(/\d+/, String(1 + int(3000)))),
    maybe(/ \+0x[0-9a-f]+/g, () => ` +0x${hex(1 + int(4))}`),
    // versions, content hashes and deploy paths
    maybe(/(\w)-\d+\.\d+\.\d+(?=[./])/g, (_, c) => `${c}-${int(9)}.${int(20)}.${int(40)}`),
    maybe(/@v?\d+\.\d+\.\d+/g, (m) => `@${m[1] === 'v' ? 'v' : ''}${int(9)}.${int(20)}.${int(40)}`),
    maybe(/python3\.\d+|ruby\/3\.\d\.0/g, (m) => m.replace(/\.\d+/, `.${int(20)}`)),
    maybe(/\.[0-9a-f]{8}\.(js|chunk)/g, (_, k) => `.${hex(8)}.${k}`),
    maybe(
      /releases\/[\w-]+\//g,
      () => `releases/${20260000 + int(10_000)}${int(2) ? `-${hex(6)}` : ''}/`,
    ),
    maybe(
      /(["( ]|file:\/\/)\/(app|src)\//g,
      (_, p) => `${p}/var/lib/docker/overlay2/${hex(64)}/merged/${word() || 'app'}/`,
    ),
  ];
  return steps.reduce((s, step) => step(s), text);
}

describe('the fingerprint corpus', () => {
  it('holds every runtime, at least two occurrences of each bug', () => {
    const runtimes = new Set(bugs.map((b) => b.bug.split('-')[0]));
    expect([...runtimes].sort()).toEqual(['dotnet', 'go', 'java', 'node', 'python', 'ruby']);
    for (const { bug, stacks } of bugs) {
      expect(stacks.length, bug).toBeGreaterThanOrEqual(2);
      expect(THROWING[bug], bug).toBeDefined();
    }
  });

  for (const { bug, stacks } of bugs) {
    it(`${bug}: every occurrence parses to a type and frames, and shares one fingerprint`, () => {
      for (const { name, text } of stacks) {
        const parsed = parseStack(text);
        expect(parsed.type, name).toBeDefined();
        expect(parsed.frames.map((f) => f.fn).join('\n'), name).toContain(THROWING[bug]);
      }
      const ids = new Set(stacks.map((s) => fingerprint(s.text)));
      expect([...ids], stacks.map((s) => s.name).join(', ')).toHaveLength(1);
    });
  }

  it('two bugs never share a fingerprint', () => {
    const byId = new Map<string, string>();
    for (const { bug, stacks } of bugs) {
      const id = fingerprint(stacks[0]!.text);
      expect(byId.get(id), `${bug} and ${byId.get(id)}`).toBeUndefined();
      byId.set(id, bug);
    }
  });
});

describe('fingerprint properties over the corpus', () => {
  const all = bugs.flatMap(({ bug, stacks }) => stacks.map((s) => ({ bug, ...s })));

  it('the same bug with other messages, ids, addresses, lines, hosts and deploys keeps its fingerprint', () => {
    fc.assert(
      fc.property(fc.constantFrom(...all), fc.integer(), ({ text }, seed) => {
        const variant = sameBug(text, seed);
        expect(fingerprint(variant)).toBe(fingerprint(text));
      }),
      { numRuns: 600 },
    );
  });

  it('another throwing function gives another fingerprint, for every runtime', () => {
    const identifier = fc.stringMatching(/^[a-z][a-zA-Z]{2,14}$/);
    fc.assert(
      fc.property(
        fc.constantFrom(...all),
        identifier,
        fc.integer(),
        ({ bug, text }, name, seed) => {
          const throwing = THROWING[bug]!;
          fc.pre(name !== throwing && !text.includes(name));
          const renamed = text.replaceAll(throwing, name);
          expect(fingerprint(sameBug(renamed, seed))).not.toBe(fingerprint(text));
        },
      ),
      { numRuns: 600 },
    );
  });

  it('a variation is seen by the fingerprint input (the property is not vacuous)', () => {
    // Across seeds every stack gets changed somewhere, so the first property can fail.
    for (const { name, text } of all) {
      const changed = [1, 2, 3, 4, 5].some((seed) => sameBug(text, seed) !== text);
      expect(changed, name).toBe(true);
    }
  });
});
