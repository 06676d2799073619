import type { Logger } from './logger.ts';

/**
 * A task run every `everyMs` (the clock's tick) that may fail for as long as what it
 * reads is down (a broker unreachable for minutes):
 *
 * - A run still going when the next is due is not overlapped: the next is skipped, so
 *   runs waiting on a slow broker do not pile up (at most one in flight).
 * - A failure is logged at `error` once, when the task starts failing; while it goes on
 *   failing, one `warn` line per `repeatEveryMs` (default 60 s) counts the failures since,
 *   with the latest error; the first success after logs once that it recovered. So a
 *   broker down for an hour writes about 60 lines, not 3,600 stacks.
 */
export interface Periodic {
  stop(): void;
}

export function startPeriodic(options: {
  name: string;
  everyMs: number;
  run: () => Promise<void>;
  logger: Logger;
  repeatEveryMs?: number;
  clock?: () => number;
}): Periodic {
  const clock = options.clock ?? Date.now;
  const repeatEveryMs = options.repeatEveryMs ?? 60_000;
  let running = false;
  let failing = 0;
  let firstFailedAt = 0;
  let lastLoggedAt = 0;
  let sinceLogged = 0;
  const fire = async () => {
    if (running) return;
    running = true;
    try {
      await options.run();
      if (failing > 0) {
        options.logger.info(
          { failures: failing, seconds: Math.round((clock() - firstFailedAt) / 1_000) },
          `${options.name} recovered`,
        );
        failing = 0;
      }
    } catch (err) {
      const now = clock();
      failing++;
      if (failing === 1) {
        firstFailedAt = lastLoggedAt = now;
        sinceLogged = 0;
        options.logger.error({ err }, `${options.name} failed`);
      } else {
        sinceLogged++;
        if (now - lastLoggedAt >= repeatEveryMs) {
          options.logger.warn(
            { err, failures: sinceLogged, seconds: Math.round((now - firstFailedAt) / 1_000) },
            `${options.name} still failing`,
          );
          lastLoggedAt = now;
          sinceLogged = 0;
        }
      }
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void fire(), options.everyMs);
  return { stop: () => clearInterval(timer) };
}
