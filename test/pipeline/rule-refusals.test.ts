import { describe, expect, it } from 'vitest';
import { createRefusalReporter } from '../../pipeline/rule-refusals.ts';
import { createTelemetry } from '../../pipeline/telemetry.ts';

describe('refused keys and terms: counted always, logged once per rule per minute', () => {
  it('counts every refusal and logs the first, then the count since, a minute later', async () => {
    const telemetry = createTelemetry();
    const lines: Array<Record<string, unknown>> = [];
    let now = 1_000_000;
    const report = createRefusalReporter({
      telemetry,
      logger: { warn: (obj: Record<string, unknown>) => void lines.push(obj) } as never,
      clock: () => now,
    });
    for (let i = 0; i < 5; i++) report('a', 'key', 10);
    report('b', 'term', 7);
    now += 59_999;
    report('a', 'key', 10);
    expect(lines).toEqual([
      { rule: 'a', what: 'key', cap: 10, refused: 1 },
      { rule: 'b', what: 'term', cap: 7, refused: 1 },
    ]);
    now += 1;
    report('a', 'key', 10);
    expect(lines[2]).toEqual({ rule: 'a', what: 'key', cap: 10, refused: 6 });
    const metrics = await telemetry.registry.metrics();
    expect(metrics).toMatch(/drover_rule_keys_refused_total\{rule="a"\} 7/);
    expect(metrics).toMatch(/drover_rule_terms_refused_total\{rule="b"\} 1/);
  });
});
