import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { normalize } from '../ingest/model/index.ts';
import { parseDuration } from './duration.ts';
import { Engine } from './engine.ts';
import { type Diagnostic, loadRules } from './load.ts';
import type { Alert, RuleSpec, StateChange } from './types.ts';

/**
 * Rule unit tests (`*.test.yaml`), in the spirit of `promtool test rules`: input
 * events at offsets from a start time (with `repeat`/`every` shorthands), the alerts
 * expected with a time tolerance, and by default no other alerts.
 *
 *   rule_files: [checkout-errors-spike.yaml]
 *   start: 2024-01-01T00:00:00Z
 *   tests:
 *     - name: a burst of errors fires
 *       events:
 *         - { at: 0s, repeat: 20, every: 30s, event: { service.name: checkout, log.level: error } }
 *       end: 30m
 *       expect:
 *         - { rule: checkout-errors-spike, at: 10m, tolerance: 30s, key: { service.name: checkout } }
 *
 * In a repeated event, `{{ n }}` in a string is the repetition's index (0, 1, ...).
 */

interface EventInput {
  at: number;
  repeat: number;
  every: number;
  event: Record<string, unknown>;
}

interface ExpectedAlert {
  rule: string;
  at?: number;
  tolerance: number;
  key?: Record<string, unknown>;
  figures?: Record<string, unknown>;
  /** A state change expected instead of an alert (`firing`, the default, is an alert). */
  state?: StateChange['state'];
  line: number;
}

const STATES = ['firing', 'pending', 'inactive', 'resolved'];

interface TestCase {
  name: string;
  events: EventInput[];
  end?: number;
  from?: number;
  expect: ExpectedAlert[];
  noOtherAlerts: boolean;
  line: number;
  col: number;
}

export interface TestResult {
  file: string;
  name: string;
  line: number;
  col: number;
  passed: boolean;
  failures: string[];
  alerts: Alert[];
}

export interface TestFileReport {
  file: string;
  results: TestResult[];
  /** Errors in the test file or the rules it loads: every test of the file fails. */
  diagnostics: Diagnostic[];
}

const DEFAULT_START = Date.parse('2024-01-01T00:00:00Z');

class TestFileError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly col: number,
  ) {
    super(message);
  }
}

export async function runTestFile(file: string): Promise<TestFileReport> {
  const text = await readFile(file, 'utf8');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const at = (node: unknown) => {
    const range = (node as { range?: [number, number] } | undefined)?.range;
    const pos = lc.linePos(range ? range[0] : 0);
    return { line: pos.line, col: pos.col };
  };
  const fail = (message: string, node?: unknown): TestFileReport => {
    const pos = at(node);
    return { file, results: [], diagnostics: [{ file, ...pos, message, severity: 'error' }] };
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lc.linePos(e.pos[0]);
    return {
      file,
      results: [],
      diagnostics: [{ file, line: pos.line, col: pos.col, message: e.message, severity: 'error' }],
    };
  }
  const root = doc.contents;
  if (!isMap(root)) return fail('a rule test file is a mapping with rule_files and tests');

  let cases: TestCase[];
  let ruleFiles: string[];
  let start: number;
  let lateness: number | undefined;
  try {
    const data = doc.toJS() as Record<string, unknown>;
    for (const k of Object.keys(data)) {
      if (!['rule_files', 'start', 'allowed_lateness', 'tests'].includes(k)) {
        throw new TestFileError(
          `unknown field "${k}" (expected rule_files, start, allowed_lateness, tests)`,
          ...pos(root.get(k, true)),
        );
      }
    }
    const rf = data.rule_files;
    if (!Array.isArray(rf) || rf.length === 0 || rf.some((f) => typeof f !== 'string')) {
      throw new TestFileError(
        'rule_files must be a non-empty list of paths',
        ...pos(root.get('rule_files', true)),
      );
    }
    ruleFiles = (rf as string[]).map((f) => resolve(dirname(file), f));
    start = data.start === undefined ? DEFAULT_START : parseTime(data.start);
    if (Number.isNaN(start)) {
      throw new TestFileError(
        `start must be an ISO 8601 time, got ${JSON.stringify(data.start)}`,
        ...pos(root.get('start', true)),
      );
    }
    lateness =
      data.allowed_lateness === undefined ? undefined : parseDuration(data.allowed_lateness);
    const testsNode = root.get('tests', true);
    if (!isSeq(testsNode))
      throw new TestFileError('tests must be a list', ...pos(testsNode ?? root));
    cases = testsNode.items.map((node, i) => parseCase(node, (data.tests as unknown[])[i], i));
  } catch (err) {
    if (err instanceof TestFileError) {
      return {
        file,
        results: [],
        diagnostics: [
          { file, line: err.line, col: err.col, message: err.message, severity: 'error' },
        ],
      };
    }
    return fail((err as Error).message);
  }

  const loaded = await loadRules(ruleFiles);
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) return { file, results: [], diagnostics: errors };

  const results = cases.map((c) => runCase(file, c, loaded.rules, start, lateness));
  return { file, results, diagnostics: [] };

  function pos(node: unknown): [number, number] {
    const p = at(node);
    return [p.line, p.col];
  }

  function parseCase(node: unknown, raw: unknown, i: number): TestCase {
    const { line, col } = at(node);
    if (raw === null || typeof raw !== 'object')
      throw new TestFileError(`tests[${i}] must be a mapping`, ...pos(node));
    const r = raw as Record<string, unknown>;
    const map = node as { get(k: string, keep: true): unknown };
    for (const k of Object.keys(r)) {
      if (!['name', 'events', 'end', 'from', 'expect', 'no_other_alerts'].includes(k)) {
        throw new TestFileError(
          `unknown field "${k}" in a test (expected name, events, end, from, expect, no_other_alerts)`,
          ...pos(map.get(k, true)),
        );
      }
    }
    const name = typeof r.name === 'string' ? r.name : `test ${i + 1}`;
    if (!Array.isArray(r.events))
      throw new TestFileError(
        `${name}: events must be a list`,
        ...pos(map.get('events', true) ?? node),
      );
    const eventsNode = map.get('events', true) as { items: unknown[] };
    const events = r.events.map((e, j) => {
      const en = eventsNode.items[j];
      if (e === null || typeof e !== 'object')
        throw new TestFileError(`${name}: events[${j}] must be a mapping`, ...pos(en));
      const ev = e as Record<string, unknown>;
      if (ev.event === null || typeof ev.event !== 'object')
        throw new TestFileError(`${name}: events[${j}] needs an event object`, ...pos(en));
      const repeat = ev.repeat === undefined ? 1 : Number(ev.repeat);
      if (!Number.isInteger(repeat) || repeat < 1)
        throw new TestFileError(
          `${name}: events[${j}].repeat must be a positive integer`,
          ...pos(en),
        );
      if (repeat > 1 && ev.every === undefined)
        throw new TestFileError(`${name}: events[${j}] repeats, so it needs every`, ...pos(en));
      return {
        at: offset(ev.at ?? '0s', en),
        repeat,
        every: ev.every === undefined ? 0 : offset(ev.every, en),
        event: ev.event as Record<string, unknown>,
      };
    });
    const expectNode = map.get('expect', true) as { items: unknown[] } | undefined;
    const expect = ((r.expect as unknown[]) ?? []).map((x, j) => {
      const xn = expectNode?.items[j];
      const e = x as Record<string, unknown>;
      if (typeof e?.rule !== 'string')
        throw new TestFileError(`${name}: expect[${j}] needs a rule name`, ...pos(xn));
      if (e.state !== undefined && !STATES.includes(e.state as string))
        throw new TestFileError(
          `${name}: expect[${j}].state is one of ${STATES.join(', ')}`,
          ...pos(
            (xn as { get?: (k: string, keep: boolean) => unknown })?.get?.('state', true) ?? xn,
          ),
        );
      if (e.state !== undefined && e.state !== 'firing' && e.figures !== undefined)
        throw new TestFileError(
          `${name}: expect[${j}]: figures belong to alerts, not to a ${String(e.state)} state`,
          ...pos(xn),
        );
      return {
        rule: e.rule,
        at: e.at === undefined ? undefined : offset(e.at, xn),
        tolerance: e.tolerance === undefined ? 0 : offset(e.tolerance, xn),
        key: e.key as Record<string, unknown> | undefined,
        figures: e.figures as Record<string, unknown> | undefined,
        ...(e.state !== undefined &&
          e.state !== 'firing' && { state: e.state as StateChange['state'] }),
        line: at(xn).line,
      };
    });
    return {
      name,
      events,
      end: r.end === undefined ? undefined : offset(r.end, map.get('end', true)),
      from: r.from === undefined ? undefined : offset(r.from, map.get('from', true)),
      expect,
      noOtherAlerts: r.no_other_alerts !== false,
      line,
      col,
    };
  }

  function offset(v: unknown, node: unknown): number {
    try {
      if (v === 0 || v === '0') return 0;
      return parseDuration(v);
    } catch (err) {
      throw new TestFileError((err as Error).message, ...pos(node));
    }
  }
}

function parseTime(v: unknown): number {
  return v instanceof Date ? v.getTime() : typeof v === 'string' ? Date.parse(v) : Number.NaN;
}

function runCase(
  file: string,
  c: TestCase,
  rules: RuleSpec[],
  start: number,
  lateness: number | undefined,
): TestResult {
  const alerts: Alert[] = [];
  const changes: StateChange[] = [];
  const engine = new Engine(rules, {
    allowedLatenessMs: lateness,
    alertFrom: c.from === undefined ? undefined : start + c.from,
    observedFrom: start,
    onAlert: (a) => alerts.push(a),
    onState: (change) => changes.push(change),
  });
  const timeline: Array<{ t: number; seq: number; event: Record<string, unknown> }> = [];
  let seq = 0;
  for (const input of c.events) {
    for (let i = 0; i < input.repeat; i++) {
      const event = input.repeat > 1 ? withIndex(input.event, i) : input.event;
      timeline.push({ t: start + input.at + i * input.every, seq: seq++, event });
    }
  }
  timeline.sort((a, b) => a.t - b.t || a.seq - b.seq);
  for (const { t, event } of timeline) {
    const normalized = normalize({ ...event }, { receivedAt: t });
    normalized['@timestamp'] = t;
    engine.process(normalized);
  }
  engine.finish(c.end === undefined ? undefined : start + c.end);

  const failures: string[] = [];
  const unmatched = new Set(alerts);
  // State changes are checked only where expected: no_other_alerts is about alerts.
  const unmatchedChanges = new Set(changes);
  for (const e of c.expect) {
    if (e.state !== undefined) {
      const match = [...unmatchedChanges].find((a) => a.state === e.state && matches(a, e, start));
      if (match) unmatchedChanges.delete(match);
      else
        failures.push(
          `expected ${describeExpected(e, start)} (line ${e.line}), but ${nearestState(changes, e, start)}`,
        );
      continue;
    }
    const match = [...unmatched].find((a) => matches(a, e, start));
    if (match) unmatched.delete(match);
    else
      failures.push(
        `expected ${describeExpected(e, start)} (line ${e.line}), but ${nearest(alerts, e, start)}`,
      );
  }
  if (c.noOtherAlerts) {
    for (const a of unmatched) failures.push(`unexpected alert: ${describeAlert(a, start)}`);
  }
  return {
    file,
    name: c.name,
    line: c.line,
    col: c.col,
    passed: failures.length === 0,
    failures,
    alerts,
  };
}

/** Replaces `{{ n }}` in a repeated event's strings with the repetition's index. */
function withIndex(value: Record<string, unknown>, n: number): Record<string, unknown> {
  const sub = (v: unknown): unknown => {
    if (typeof v === 'string') return v.replace(/\{\{\s*n\s*\}\}/g, String(n));
    if (Array.isArray(v)) return v.map(sub);
    if (v !== null && typeof v === 'object') return withIndex(v as Record<string, unknown>, n);
    return v;
  };
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, sub(v)]));
}

function matches(a: Alert | StateChange, e: ExpectedAlert, start: number): boolean {
  if (a.rule !== e.rule) return false;
  if (e.at !== undefined && Math.abs(Date.parse(a.at) - (start + e.at)) > e.tolerance) return false;
  if (e.key !== undefined && !deepEqual(a.key, e.key)) return false;
  if (e.figures !== undefined && 'figures' in a) {
    for (const [k, v] of Object.entries(e.figures)) if (!deepEqual(a.figures[k], v)) return false;
  }
  return true;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

function rel(t: number, start: number): string {
  const ms = t - start;
  const sign = ms < 0 ? '-' : '+';
  const abs = Math.abs(ms);
  const h = Math.floor(abs / 3_600_000);
  const m = Math.floor((abs % 3_600_000) / 60_000);
  const s = (abs % 60_000) / 1000;
  return `${sign}${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${s > 0 || (h === 0 && m === 0) ? `${s}s` : ''}`;
}

function describeExpected(e: ExpectedAlert, start: number): string {
  const parts = [e.rule];
  if (e.state) parts.push(e.state);
  if (e.at !== undefined)
    parts.push(`at ${rel(start + e.at, start)}${e.tolerance ? ` ±${e.tolerance / 1000}s` : ''}`);
  if (e.key) parts.push(`key ${JSON.stringify(e.key)}`);
  if (e.figures) parts.push(`figures ${JSON.stringify(e.figures)}`);
  return parts.join(' ');
}

function describeAlert(a: Alert, start: number): string {
  return `${a.rule} at ${rel(Date.parse(a.at), start)} key ${JSON.stringify(a.key)} figures ${JSON.stringify(a.figures)}`;
}

function nearestState(changes: StateChange[], e: ExpectedAlert, start: number): string {
  const same = changes.filter((a) => a.rule === e.rule && a.state === e.state);
  if (same.length === 0) return `${e.rule} was never ${e.state ?? ''}`;
  return `${e.rule} was ${e.state} ${same
    .map((a) => `at ${rel(Date.parse(a.at), start)} key ${JSON.stringify(a.key)}`)
    .slice(0, 5)
    .join('; ')}`;
}

function nearest(alerts: Alert[], e: ExpectedAlert, start: number): string {
  const same = alerts.filter((a) => a.rule === e.rule);
  if (same.length === 0) return `${e.rule} did not fire`;
  return `${e.rule} fired ${same
    .map((a) => describeAlert(a, start))
    .slice(0, 5)
    .join('; ')}`;
}
