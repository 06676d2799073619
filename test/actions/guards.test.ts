import { describe, expect, it } from 'vitest';
import {
  checkBlastRadius,
  checkBreakers,
  checkBudgets,
  checkCooldown,
  checkInhibition,
  checkKillSwitch,
  checkMaintenance,
  checkMinHealthy,
  checkSilences,
  checkStorm,
  ConcurrencyGate,
  effectiveGuards,
  GuardConfigError,
  healthyLoss,
  instanceService,
  keyId,
  type LedgerCounts,
  serviceWide,
  validateMatchers,
} from '../../actions/guards/index.ts';
import type { Alert } from '../../rules/index.ts';

/** Each guard as a pure function of its inputs: what it stops, what it lets through. */
const counts = (c: Partial<LedgerCounts> = {}): LedgerCounts => ({
  lastOnTarget: undefined,
  rule: [],
  global: [],
  key: [],
  groupTargets: [],
  ...c,
});

const alert = (key: Record<string, unknown>, extra: Partial<Alert> = {}): Alert => ({
  id: 'a1',
  rule: 'web-errors',
  type: 'frequency',
  key,
  at: '2024-01-01T00:00:00.000Z',
  figures: {},
  labels: { team: 'payments', severity: 'page' },
  actions: [],
  ...extra,
});

describe('guard configuration', () => {
  it('a rule can only tighten: stricter values win, limits that do not compare both apply', () => {
    const g = effectiveGuards(
      { cooldownMs: 60_000, concurrency: 4, budget: { max: 10, windowMs: 3_600_000 } },
      {
        cooldownMs: 1_000, // looser: ignored
        concurrency: 1,
        budget: { max: 2, windowMs: 600_000 },
        dryRun: true,
        minHealthy: '50%',
      },
    );
    expect(g).toMatchObject({ cooldownMs: 60_000, concurrency: 1, dryRun: true });
    expect(g.ruleBudgets).toEqual([
      { max: 10, windowMs: 3_600_000 },
      { max: 2, windowMs: 600_000 },
    ]);
    expect(g.minHealthy).toEqual(['50%']);
    // A rule cannot switch off the global dry-run or kill switch.
    expect(
      effectiveGuards({ dryRun: true, killSwitch: true }, { dryRun: false, killSwitch: false }),
    ).toMatchObject({ dryRun: true, killSwitch: true });
    // Inhibition lasts until the inhibiting firing resolves, at most a day, by default;
    // a configured period keeps the older rule, the longer of two.
    expect(effectiveGuards({}, {})).toMatchObject({
      cooldownMs: 300_000,
      concurrency: 4,
      inhibitMs: 86_400_000,
      inhibitUntilResolved: true,
    });
    expect(effectiveGuards({ inhibitMs: 300_000 }, { inhibitMs: 60_000 })).toMatchObject({
      inhibitMs: 300_000,
      inhibitUntilResolved: false,
    });
    expect(effectiveGuards({ inhibitMs: 300_000 }, { inhibitUntilResolved: true })).toMatchObject({
      inhibitUntilResolved: true,
    });
  });

  it('notifications have guards of their own, with defaults, which a rule can only tighten', () => {
    expect(effectiveGuards({}, {}).notify).toEqual({
      cooldownMs: 60_000,
      ruleBudgets: [{ max: 20, windowMs: 3_600_000 }],
      globalBudgets: [{ max: 100, windowMs: 3_600_000 }],
      concurrency: 4,
    });
    const g = effectiveGuards(
      { notify: { cooldownMs: 300_000, budget: { max: 10, windowMs: 3_600_000 } } },
      { notify: { cooldownMs: 1_000, budget: { max: 2, windowMs: 600_000 }, concurrency: 1 } },
    );
    expect(g.notify).toMatchObject({ cooldownMs: 300_000, concurrency: 1 });
    expect(g.notify.ruleBudgets).toEqual([
      { max: 10, windowMs: 3_600_000 },
      { max: 2, windowMs: 600_000 },
    ]);
    expect(() => effectiveGuards({ notify: { concurrency: 0 } })).toThrow(
      /guards\.notify\.concurrency/,
    );
  });

  it('rejects nonsense with a message naming the setting', () => {
    expect(() => effectiveGuards({ concurrency: 0 })).toThrow(/concurrency must be an integer/);
    expect(() => effectiveGuards({}, { budget: { max: -1, windowMs: 1 } })).toThrow(
      /rule guards\.budget/,
    );
    expect(() => effectiveGuards({ minHealthy: 'most' })).toThrow(GuardConfigError);
    expect(() => effectiveGuards({ cooldownMs: Number.NaN })).toThrow(/cooldown/);
  });
});

describe('cooldown, budgets, breaker', () => {
  it('cooldown holds a target for its period, then lets it go', () => {
    expect(checkCooldown(counts(), 60_000, 'web-1', 100_000)).toBeUndefined();
    expect(checkCooldown(counts({ lastOnTarget: 50_000 }), 60_000, 'web-1', 100_000)).toEqual({
      guard: 'cooldown',
      reason: 'web-1 was acted on 50s ago (cooldown 60s)',
    });
    expect(checkCooldown(counts({ lastOnTarget: 40_000 }), 60_000, 'web-1', 100_000)).toBe(
      undefined,
    );
  });

  it('budgets: per rule and global, every configured window', () => {
    const rule = [
      { max: 5, windowMs: 3_600_000 },
      { max: 2, windowMs: 60_000 },
    ];
    const global = [{ max: 10, windowMs: 60_000 }];
    expect(checkBudgets(counts({ rule: [4, 1], global: [9] }), 'r', rule, global)).toBe(undefined);
    expect(checkBudgets(counts({ rule: [4, 2], global: [0] }), 'r', rule, global)?.reason).toBe(
      'rule r used its budget of 2 actions per 60s',
    );
    expect(checkBudgets(counts({ rule: [0, 0], global: [10] }), 'r', rule, global)?.reason).toBe(
      'the global budget of 10 actions per 60s is used',
    );
  });

  it('the breaker opens at N remediations of one key', () => {
    const b = [{ max: 3, windowMs: 600_000, notify: 'pager' }];
    expect(checkBreakers(counts({ key: [2] }), b)).toBeUndefined();
    expect(checkBreakers(counts({ key: [3] }), b)).toMatchObject({
      guard: 'circuit-breaker',
      count: 3,
      reason: expect.stringMatching(/3 remediations .* escalated through pager/),
    });
  });

  it('the storm cap holds new keys beyond N per window; known keys go on', () => {
    const caps = [{ max: 3, windowMs: 600_000 }];
    const storm = (otherKeys: number, thisKey = false) =>
      checkStorm(counts({ storm: [{ otherKeys, thisKey }] }), 'web-errors', caps);
    expect(storm(2)).toBeUndefined();
    expect(storm(3, true)).toBeUndefined();
    expect(storm(3)).toMatchObject({
      guard: 'storm',
      reason: expect.stringMatching(
        /rule web-errors acted on 3 distinct keys within 600s \(cap 3\)/,
      ),
      keys: 3,
    });
    expect(checkStorm(counts(), 'web-errors', caps)).toBeUndefined(); // not asked for
    expect(effectiveGuards().storm).toEqual([{ max: 50, windowMs: 600_000 }]);
    expect(
      effectiveGuards(
        { maxKeysPerRule: { max: 20, windowMs: 60_000 } },
        {
          maxKeysPerRule: { max: 5, windowMs: 60_000 },
        },
      ).storm,
    ).toEqual([
      { max: 20, windowMs: 60_000 },
      { max: 5, windowMs: 60_000 },
    ]);
  });

  it('key ids do not depend on the order of key fields', () => {
    expect(keyId('r', { a: 1, b: 2 })).toBe(keyId('r', { b: 2, a: 1 }));
    expect(keyId('r', { a: 1 })).not.toBe(keyId('s', { a: 1 }));
  });
});

describe('min-healthy floor and blast radius', () => {
  const health = {
    group: 'web',
    size: 4,
    healthy: 3,
    desired: 4,
    members: [
      { id: 'web-1', healthy: true },
      { id: 'web-2', healthy: false },
    ],
  };

  it('counts what an action takes away: a sick member nothing, a scale-down its difference', () => {
    expect(healthyLoss('kill-and-replace', 'web-1', undefined, health)).toBe(1);
    expect(healthyLoss('kill-and-replace', 'web-2', undefined, health)).toBe(0);
    expect(healthyLoss('scale', 'web', { by: -3 }, health)).toBe(3);
    expect(healthyLoss('scale', 'web', { to: 1 }, health)).toBe(3);
    expect(healthyLoss('scale', 'web', { to: 1, min: 3 }, health)).toBe(1);
    expect(healthyLoss('scale', 'web', { by: 2 }, health)).toBe(0);
  });

  it('never below the floor, as a count or a share', () => {
    expect(checkMinHealthy([2], health, 1)).toBeUndefined();
    expect(checkMinHealthy([3], health, 1)?.reason).toBe(
      'web has 3 healthy of 4; acting would leave 2, below the floor of 3',
    );
    expect(checkMinHealthy(['75%'], health, 1)?.guard).toBe('min-healthy');
    expect(checkMinHealthy(['75%'], health, 0)).toBeUndefined();
  });

  it('never more than a share of the group per window', () => {
    expect(checkBlastRadius(['50%'], counts({ groupTargets: ['web-1'] }), 'web-2', health)).toBe(
      undefined,
    );
    expect(
      checkBlastRadius(['50%'], counts({ groupTargets: ['web-1', 'web-3'] }), 'web-2', health)
        ?.reason,
    ).toMatch(/3 of 4 members of web .* \(limit 2, 50%\)/);
    // Replacing the same member again does not widen the blast.
    expect(
      checkBlastRadius([2], counts({ groupTargets: ['web-1', 'web-2'] }), 'web-2', health),
    ).toBeUndefined();
  });
});

describe('concurrency gate', () => {
  it('hands out at most cap slots, and a release is counted once', () => {
    const gate = new ConcurrencyGate();
    const a = gate.tryAcquire(2);
    const b = gate.tryAcquire(2);
    expect(typeof a).toBe('function');
    expect(typeof b).toBe('function');
    expect(gate.tryAcquire(2)).toMatchObject({ guard: 'concurrency' });
    (a as () => void)();
    (a as () => void)();
    expect(gate.inFlight).toBe(1);
    expect(typeof gate.tryAcquire(2)).toBe('function');
  });
});

describe('maintenance windows', () => {
  const at = (iso: string) => Date.parse(iso);
  it('one-off windows, start inclusive, end exclusive', () => {
    const w = [{ start: '2024-01-01T10:00:00Z', end: '2024-01-01T11:00:00Z' }];
    expect(checkMaintenance(w, at('2024-01-01T09:59:59Z'))).toBeUndefined();
    expect(checkMaintenance(w, at('2024-01-01T10:00:00Z'))?.guard).toBe('maintenance');
    expect(checkMaintenance(w, at('2024-01-01T11:00:00Z'))).toBeUndefined();
  });

  it('weekly windows in a timezone, including one that spans midnight', () => {
    // Saturdays 22:00 to 02:00 in Berlin (UTC+1 in January).
    const w = [
      { name: 'db patching', days: [6], from: '22:00', to: '02:00', timezone: 'Europe/Berlin' },
    ];
    expect(checkMaintenance(w, at('2024-01-06T20:59:00Z'))).toBeUndefined(); // Sat 21:59 local
    expect(checkMaintenance(w, at('2024-01-06T21:00:00Z'))?.reason).toBe(
      'maintenance window "db patching" is open',
    );
    expect(checkMaintenance(w, at('2024-01-07T00:30:00Z'))?.guard).toBe('maintenance'); // Sun 01:30
    expect(checkMaintenance(w, at('2024-01-07T01:00:00Z'))).toBeUndefined(); // Sun 02:00
    expect(checkMaintenance(w, at('2024-01-08T00:30:00Z'))).toBeUndefined(); // Mon 01:30
  });

  it('a malformed window is a configuration error, not a silent no-op', () => {
    expect(() => checkMaintenance([{ start: '2024-01-01' }], 0)).toThrow(/needs both start/);
    expect(() => checkMaintenance([{ days: [7], from: '01:00', to: '02:00' }], 0)).toThrow(/days/);
    expect(() => checkMaintenance([{ days: [1], from: '1am', to: '02:00' }], 0)).toThrow(/HH:MM/);
    expect(() =>
      checkMaintenance([{ days: [1], from: '01:00', to: '02:00', timezone: 'Mars/Olympus' }], 0),
    ).toThrow(/unknown timezone/);
  });
});

describe('silences, inhibition, kill switch', () => {
  it('silences match rule, type, labels and key, exactly or by anchored regex, until expiry', () => {
    const a = alert({ 'host.name': 'web-12', 'service.name': 'web' });
    const s = (matchers: Record<string, string>, until = 1_000) => [
      { id: 1, matchers, until, comment: 'deploy' },
    ];
    expect(checkSilences(s({ rule: 'web-errors', 'labels.team': 'payments' }), a, 0)).toEqual({
      guard: 'silenced',
      reason: 'silence 1 until 1970-01-01T00:00:01.000Z: deploy',
    });
    expect(checkSilences(s({ 'key.host.name': '~web-\\d+' }), a, 0)?.guard).toBe('silenced');
    expect(checkSilences(s({ 'key.host.name': '~web' }), a, 0)).toBeUndefined(); // anchored
    expect(checkSilences(s({ rule: 'web-errors', 'labels.team': 'search' }), a, 0)).toBe(undefined);
    expect(checkSilences(s({ 'key.container.id': '~.*' }), a, 0)).toBeUndefined(); // absent
    expect(checkSilences(s({ type: 'frequency' }), a, 1_000)).toBeUndefined(); // expired
    expect(() => validateMatchers({})).toThrow(/at least one matcher/);
    expect(() => validateMatchers({ host: 'x' })).toThrow(/use rule, type, labels.NAME or key/);
    expect(() => validateMatchers({ rule: '~(' })).toThrow(/silence matcher "rule"/);
  });

  it('a service-wide alert names its service; a per-instance alert names the one it belongs to', () => {
    expect(serviceWide(alert({ 'service.name': 'web' }))).toBe('web');
    expect(serviceWide(alert({ 'service.name': 'web', 'host.name': 'h' }))).toBeUndefined();
    expect(serviceWide(alert({}))).toBeUndefined();
    expect(
      instanceService(alert({ 'host.name': 'h' }, { sample: { 'service.name': 'web' } })),
    ).toBe('web');
    expect(instanceService(alert({ 'kubernetes.pod.name': 'p', 'service.name': 'api' }))).toBe(
      'api',
    );
    expect(instanceService(alert({ 'service.name': 'web' }))).toBeUndefined();
    expect(checkInhibition('web', 2_000, 1_000)?.guard).toBe('inhibited');
    expect(checkInhibition('web', 1_000, 1_000)).toBeUndefined();
  });

  it('the kill switch, configured or turned on at run time', () => {
    expect(checkKillSwitch(true, false)?.reason).toMatch(/configuration/);
    expect(checkKillSwitch(false, true)?.guard).toBe('kill-switch');
    expect(checkKillSwitch(false, false)).toBeUndefined();
  });
});
