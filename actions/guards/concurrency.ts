import type { Suppression } from './types.ts';

/**
 * Actions running at once in this process. A slot is taken synchronously, before any
 * await, so two alerts decided at the same moment cannot both take the last one.
 */
export class ConcurrencyGate {
  private running = 0;

  get inFlight(): number {
    return this.running;
  }

  /** A release function, or the suppression when the cap is reached. */
  tryAcquire(cap: number, what = 'actions'): (() => void) | Suppression {
    if (this.running >= cap)
      return {
        guard: 'concurrency',
        reason: `${this.running} ${what} are already running (cap ${cap})`,
      };
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
    };
  }
}
