import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { normalize } from '../../../ingest/model/index.ts';
import type { NewTermRule } from '../../../rules/index.ts';
import { m, offsets, rule, run, T0 } from '../../rules/helpers.ts';

const corpus = (path: string) =>
  readFileSync(new URL(`./fingerprint-corpus/${path}`, import.meta.url), 'utf8');

/** An error log line as ecszap or logback-ecs would ship it, normalized as ingest does. */
const errorAt = (offset: number, host: string, stack: string) =>
  normalize({
    '@timestamp': new Date(T0 + offset).toISOString(),
    'service.name': 'orders',
    'host.name': host,
    'log.level': 'error',
    message: 'request failed',
    'error.stack_trace': stack,
  });

describe('new_term on error.fingerprint reports each new bug once', () => {
  const newBug = rule<NewTermRule>({
    name: 'new-bug',
    type: 'new_term',
    fields: ['error.fingerprint'],
    terms_window_size: m(24 * 60),
    alert_on_missing_field: false,
  });

  it('a new Go panic with the same message is new; a deploy of the same bugs is not', () => {
    const goCharge = corpus('go-nil-customer/orders-1.txt');
    // Another function dereferencing nil: the same panic message and runtime frames.
    const goCapture = goCharge.replaceAll('(*Service).Charge', '(*Service).Capture');
    const { alerts } = run(
      [newBug],
      [
        errorAt(0, 'orders-1', goCharge),
        errorAt(m(1), 'orders-3', corpus('go-nil-customer/orders-3-next-deploy.txt')),
        errorAt(m(2), 'orders-1', goCapture),
        errorAt(m(3), 'orders-2', corpus('java-spring-order-save/web-1.txt')),
        errorAt(m(4), 'orders-7', corpus('java-spring-order-save/web-7-next-deploy.txt')),
      ],
    );
    expect(offsets(alerts)).toEqual([0, m(2), m(3)]);
  });
});
