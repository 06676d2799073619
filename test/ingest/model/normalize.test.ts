import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NormalizeError, normalize } from '../../../ingest/model/index.ts';

describe('normalize: the event model of docs/architecture.md', () => {
  it("maps pino's native fields", () => {
    const stackText = readFileSync(
      new URL('./fixtures/stacks/node-checkout-123.txt', import.meta.url),
      'utf8',
    );
    const line = {
      level: 50,
      time: 1732272000123,
      pid: 4242,
      hostname: 'web-1',
      name: 'checkout',
      msg: 'payment failed',
      err: { type: 'Error', message: 'payment declined for order 123', stack: stackText },
      req: { id: 'r-1', method: 'POST' },
    };
    const e = normalize(line);
    expect(e).toMatchObject({
      '@timestamp': 1732272000123,
      'log.level': 'error',
      'service.name': 'checkout',
      'host.name': 'web-1',
      message: 'payment failed',
      'error.type': 'Error',
      'error.message': 'payment declined for order 123',
      'error.stack_trace': stackText,
      'process.pid': 4242,
      'req.id': 'r-1',
      'req.method': 'POST',
    });
    expect(e['error.fingerprint']).toMatch(/^[0-9a-f]{16}$/);
    for (const consumed of [
      'level',
      'time',
      'msg',
      'hostname',
      'name',
      'err.stack',
      'err.type',
      'pid',
    ]) {
      expect(e).not.toHaveProperty([consumed]);
    }
  });

  it("keeps pino's hostname and name when a shipper's ECS fields filled the model", () => {
    // Filebeat on a Kubernetes node: host.name is the node, hostname the app's pod.
    const e = normalize({
      '@timestamp': '2024-11-22T10:00:00.000Z',
      host: { name: 'node-3' },
      service: { name: 'checkout' },
      hostname: 'checkout-7d9f-abcde',
      name: 'checkout-api',
      msg: 'failed',
    });
    expect(e).toMatchObject({
      'host.name': 'node-3',
      hostname: 'checkout-7d9f-abcde',
      'service.name': 'checkout',
      name: 'checkout-api',
    });
    // The same value adds nothing: it is not repeated.
    const same = normalize({ 'host.name': 'web-1', hostname: 'web-1', msg: 'x' });
    expect(same).not.toHaveProperty(['hostname']);
  });

  it('maps pino levels 10..60 and values between them', () => {
    const levels = [10, 20, 30, 40, 50, 60, 35].map(
      (level) => normalize({ level, time: 1 })['log.level'],
    );
    expect(levels).toEqual(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'info']);
  });

  it('takes no level from a name Object.prototype carries', () => {
    // Hostile input: an alias table with a prototype read `constructor` as a level
    // (the Object function) and `__proto__` as Object.prototype.
    for (const name of ['constructor', '__proto__', 'CONSTRUCTOR', ' toString ', 'valueOf']) {
      for (const field of ['log.level', 'level', 'severityText', 'severity']) {
        const e = normalize({ time: 1, [field]: name });
        expect(e['log.level'], `${field}: ${name}`).toBeUndefined();
      }
    }
    expect(normalize({ time: 1, 'log.level': ' Warning ' })['log.level']).toBe('warn');
  });

  it('accepts ECS documents, nested and dotted alike', () => {
    const nested = normalize({
      '@timestamp': '2024-11-22T10:00:00.000Z',
      log: { level: 'WARNING' },
      service: { name: 'api' },
      host: { name: 'api-2' },
      error: { type: 'TimeoutError', message: 'upstream timed out' },
      http: { response: { status_code: 504 } },
    });
    const dotted = normalize({
      '@timestamp': '2024-11-22T10:00:00.000Z',
      'log.level': 'WARNING',
      'service.name': 'api',
      'host.name': 'api-2',
      'error.type': 'TimeoutError',
      'error.message': 'upstream timed out',
      'http.response.status_code': 504,
    });
    expect(nested).toEqual(dotted);
    expect(nested['@timestamp']).toBe(Date.parse('2024-11-22T10:00:00.000Z'));
    expect(nested['log.level']).toBe('warn');
    expect(nested['http.response.status_code']).toBe(504);
  });

  it('takes OTLP-style times and severities', () => {
    const e = normalize({ timeUnixNano: '1732272000123456789', severityNumber: 17, body: 'x' });
    expect(e['@timestamp']).toBe(1732272000123);
    expect(e['log.level']).toBe('error');
  });

  it('falls back to the receipt time and the ?service= default', () => {
    const e = normalize({ message: 'hello' }, { receivedAt: 42, service: 'web' });
    expect(e['@timestamp']).toBe(42);
    expect(e['service.name']).toBe('web');
    expect(
      normalize({ message: 'x', 'service.name': 'api' }, { service: 'web' })['service.name'],
    ).toBe('api');
  });

  it('reads the error type from a stack when none is given', () => {
    const stackText = readFileSync(
      new URL('./fixtures/stacks/python-refund.txt', import.meta.url),
      'utf8',
    );
    const e = normalize({ message: 'boom', 'error.stack_trace': stackText });
    expect(e['error.type']).toBe('KeyError');
    expect(e['error.fingerprint']).toBeDefined();
  });

  it('keeps metric samples numeric and rejects a metric without a number', () => {
    const m = normalize({
      '@timestamp': 5,
      metric: { name: 'http_latency_ms', value: '12.5' },
      'service.name': 'web',
    });
    expect(m['metric.value']).toBe(12.5);
    expect(m['metric.type']).toBe('gauge');
    expect(() => normalize({ 'metric.name': 'x', 'metric.value': 'abc' })).toThrow(NormalizeError);
  });

  it('rejects what is not an object with a clear error', () => {
    expect(() => normalize([1, 2])).toThrow(/expected a JSON object, got an array/);
    expect(() => normalize('line')).toThrow(/got string/);
    expect(() => normalize(null)).toThrow(/got null/);
  });

  it('keeps arrays as values', () => {
    expect(normalize({ tags: ['a', 'b'], time: 1 }).tags).toEqual(['a', 'b']);
  });
});
