import type { Suppression } from './types.ts';

/** The global kill switch: on in the configuration, or turned on at run time (API, CLI). */
export function checkKillSwitch(configured: boolean, stored: boolean): Suppression | undefined {
  if (configured)
    return { guard: 'kill-switch', reason: 'the kill switch is on in the configuration' };
  if (stored) return { guard: 'kill-switch', reason: 'the global kill switch is on' };
  return undefined;
}
