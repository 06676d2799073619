import { describe, expect, it } from 'vitest';
import { alertFacts, plan, render, TemplateError, validateAction } from '../../actions/index.ts';
import type { Alert } from '../../rules/index.ts';

const alert: Alert = {
  id: 'f00d',
  rule: 'checkout-errors-spike',
  type: 'spike',
  description: 'Error rate of a service jumps',
  key: { 'service.name': 'checkout', 'host.name': 'checkout-7' },
  at: '2024-05-01T12:00:00.000Z',
  figures: { count: 120, reference: 10 },
  sample: {
    '@timestamp': 1714564800000,
    'service.name': 'checkout',
    'host.name': 'checkout-7',
    'kubernetes.pod.name': 'checkout-7f9c',
    cloud: { region: 'eu-west-1' },
    'error.type': 'TypeError',
  },
  labels: { team: 'payments' },
  actions: [],
};

describe('target templates', () => {
  it('reads key fields, labels, alert fields and figures, and sample fields flat or nested', () => {
    expect(render('{{ service.name }}', alert)).toBe('checkout');
    expect(render('{{ key.host.name }}', alert)).toBe('checkout-7');
    expect(render('{{labels.team}}/{{ alert.rule }}', alert)).toBe(
      'payments/checkout-errors-spike',
    );
    expect(render('{{ alert.count }} > {{ figures.reference }}', alert)).toBe('120 > 10');
    expect(render('{{ kubernetes.pod.name }}', alert)).toBe('checkout-7f9c');
    expect(render('{{ cloud.region }}', alert)).toBe('eu-west-1');
    expect(render('{{ sample.error.type }}', alert)).toBe('TypeError');
    expect(render('{{ alert.id }}', alert)).toBe('f00d');
    expect(render('plain', alert)).toBe('plain');
  });

  it('a missing variable, an object or unbalanced braces are errors, never an empty string', () => {
    expect(() => render('{{ container.id }}', alert)).toThrow(TemplateError);
    expect(() => render('{{ container.id }}', alert)).toThrow(
      '"container.id" is not set in alert f00d of checkout-errors-spike',
    );
    expect(() => render('{{ labels.owner }}', alert)).toThrow(/"labels.owner" is not set/);
    expect(() => render('{{ cloud }}', alert)).toThrow(/is an object/);
    expect(() => render('{{ host.name', alert)).toThrow(/unbalanced/);
    expect(() => render('{{ key.cloud.region }}', alert)).toThrow(/not set/); // key only
  });
});

describe('when facts', () => {
  it('names the alert, its figures, labels, key and sample', () => {
    expect(alertFacts(alert)).toMatchObject({
      'alert.id': 'f00d',
      'alert.rule': 'checkout-errors-spike',
      'alert.type': 'spike',
      'alert.at_ms': 1714564800000,
      'alert.count': 120,
      'alert.reference': 10,
      'alert.figures': { count: 120, reference: 10 },
      'labels.team': 'payments',
      'key.host.name': 'checkout-7',
      'sample.error.type': 'TypeError',
    });
  });
});

describe('policy', () => {
  it('expands action sets, renders targets, evaluates when, and numbers actions stably', async () => {
    const planned = await plan(
      {
        ...alert,
        actions: [
          'replace',
          {
            adapter: 'fleet',
            operation: 'scale',
            params: { by: 2, max: 12 },
            when: { all: [{ fact: 'alert.count', operator: 'greaterThan', value: 100 }] },
          },
          {
            adapter: 'pager',
            operation: 'notify',
            when: { all: [{ fact: 'labels.team', operator: 'equal', value: 'search' }] },
          },
          {
            adapter: 'pager',
            operation: 'notify',
            when: { all: [{ fact: 'nope', operator: 'equal', value: 1 }] },
          },
        ],
      },
      {
        replace: [
          { adapter: 'fleet', operation: 'kill-and-replace' },
          { adapter: 'pager', operation: 'notify', target: '#{{ labels.team }}' },
        ],
      },
    );
    expect(planned).toEqual([
      {
        kind: 'act',
        index: 0,
        adapter: 'fleet',
        operation: 'kill-and-replace',
        target: 'checkout-7',
        // Remediations are verified; the default window is per operation.
        verify: { withinMs: 300_000 },
      },
      {
        kind: 'act',
        index: 1,
        adapter: 'pager',
        operation: 'notify',
        target: '#payments',
        // Every notify action groups its alerts unless it says `group: false`.
        group: { by: ['rule'], waitMs: 10_000, intervalMs: 300_000, repeatMs: 14_400_000 },
      },
      {
        kind: 'act',
        index: 2,
        adapter: 'fleet',
        operation: 'scale',
        target: 'checkout',
        params: { by: 2, max: 12 },
        verify: { withinMs: 600_000 },
      },
      expect.objectContaining({ kind: 'skip', index: 3, target: 'checkout-errors-spike' }),
      // An undefined fact is allowed: the condition is simply false.
      expect.objectContaining({ kind: 'skip', index: 4 }),
    ]);
  });

  it('an unknown action set, a bad template or a malformed action fails with the reason', async () => {
    const planned = await plan({
      ...alert,
      actions: [
        'nope',
        { adapter: 'fleet', operation: 'kill-and-replace', target: '{{ container.id }}' },
        { adapter: 'fleet', operation: 'reboot' as never },
        { adapter: 'fleet', operation: 'scale', params: { by: 1, to: 3 } },
      ],
    });
    expect(planned.map((p) => (p.kind === 'act' ? 'act' : p.why))).toEqual([
      'no action set named "nope" is configured',
      '"container.id" is not set in alert f00d of checkout-errors-spike',
      'unknown operation "reboot" (use kill-and-replace, scale, notify)',
      'scale needs exactly one of params.to or params.by',
    ]);
  });

  it('validates scale parameters', () => {
    const scale = (params: Record<string, unknown>) =>
      validateAction({ adapter: 'f', operation: 'scale', params });
    expect(scale({ to: 3 })).toBeUndefined();
    expect(scale({ by: -1, min: 2 })).toBeUndefined();
    expect(scale({})).toMatch(/exactly one/);
    expect(scale({ by: '2' })).toMatch(/must be numbers/);
    expect(scale({ to: -1 })).toMatch(/≥ 0/);
    expect(scale({ by: 1, min: 5, max: 2 })).toMatch(/above params.max/);
    expect(validateAction({ adapter: '', operation: 'notify' })).toMatch(/no adapter/);
  });
});
