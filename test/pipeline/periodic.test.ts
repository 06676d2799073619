import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../pipeline/logger.ts';
import { startPeriodic } from '../../pipeline/periodic.ts';

afterEach(() => {
  vi.useRealTimers();
});

/** A logger that keeps what it was given, by level. */
function keptLogger() {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    lines.push({ level, msg, fields });
  const logger = { error: at('error'), warn: at('warn'), info: at('info') } as unknown as Logger;
  return { logger, lines };
}

describe('startPeriodic', () => {
  it('does not overlap a run still going: the runs due meanwhile are skipped', async () => {
    vi.useFakeTimers();
    const { logger } = keptLogger();
    let started = 0;
    let finish: () => void = () => {};
    const p = startPeriodic({
      name: 'slow',
      everyMs: 1_000,
      logger,
      run: () => {
        started++;
        return new Promise<void>((r) => (finish = r));
      },
    });
    await vi.advanceTimersByTimeAsync(10_500);
    expect(started).toBe(1);
    finish();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(started).toBe(2);
    p.stop();
  });

  it('logs a failure once, then a count a minute while it goes on, then that it recovered', async () => {
    vi.useFakeTimers();
    const { logger, lines } = keptLogger();
    let down = true;
    const p = startPeriodic({
      name: 'the tick',
      everyMs: 1_000,
      logger,
      run: async () => {
        if (down) throw new Error('broker unreachable');
      },
    });
    // Down for an hour: 3,600 failures.
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(lines[0]).toMatchObject({ level: 'error', msg: 'the tick failed' });
    const warns = lines.filter((l) => l.level === 'warn');
    expect(warns.length).toBeGreaterThanOrEqual(58);
    expect(warns.length).toBeLessThanOrEqual(60);
    expect(warns.every((w) => w.msg === 'the tick still failing')).toBe(true);
    // Every failure is counted in one line or another.
    // Every failure but those since the last line is counted in one line or another.
    const counted = 1 + warns.reduce((n, w) => n + (w.fields.failures as number), 0);
    expect(counted).toBeLessThanOrEqual(3_600);
    expect(counted).toBeGreaterThan(3_600 - 60);
    expect(warns[0]!.fields.failures).toBe(60);
    down = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(lines.at(-1)).toMatchObject({ level: 'info', msg: 'the tick recovered' });
    expect(lines.at(-1)!.fields.failures).toBe(3_600);
    const count = lines.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lines.length).toBe(count);
    p.stop();
  });
});
