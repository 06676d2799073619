import { SilenceError, validateMatchers } from './guards/index.ts';
import type { RemediationStore } from './journal/types.ts';

/**
 * Entry points for `drover actions kill-switch on|off|status` and silences, over any
 * store: they take the arguments after the subcommand and return the line to print.
 */
export async function killSwitchCommand(
  store: Pick<RemediationStore, 'killSwitch' | 'setKillSwitch'>,
  args: string[],
): Promise<{ on: boolean; message: string }> {
  const [state, ...extra] = args;
  if ((state !== 'on' && state !== 'off' && state !== 'status') || extra.length > 0)
    throw new RangeError('usage: drover actions kill-switch on|off|status');
  if (state !== 'status') await store.setKillSwitch(state === 'on');
  const on = await store.killSwitch();
  return { on, message: `kill switch is ${on ? 'on: no action will run' : 'off'}` };
}

/**
 * Adds a silence: `matchers` as `field=value` strings (`rule=web-errors`,
 * `labels.team=payments`, `key.host.name=~web-.*`), for a duration or until a time.
 */
export async function silenceCommand(
  store: Pick<RemediationStore, 'addSilence'>,
  options: {
    matchers: string[];
    forMs?: number;
    until?: number;
    comment?: string;
    /** Ends when an alert it matches resolves, if before `until`. */
    expireOnResolve?: boolean;
  },
  now: number = Date.now(),
): Promise<{ id: number | string; until: number; message: string }> {
  const matchers: Record<string, string> = {};
  for (const m of options.matchers) {
    const eq = m.indexOf('=');
    if (eq <= 0) throw new SilenceError(`matcher "${m}" is not field=value`);
    matchers[m.slice(0, eq)] = m.slice(eq + 1);
  }
  validateMatchers(matchers);
  const until = options.until ?? (options.forMs !== undefined ? now + options.forMs : undefined);
  if (until === undefined || !Number.isFinite(until) || until <= now)
    throw new SilenceError('a silence needs an expiry in the future (a duration or a time)');
  const id = await store.addSilence(matchers, until, options.comment ?? '', {
    ...(options.expireOnResolve && { expireOnResolve: true }),
  });
  return {
    id,
    until,
    message: `silence ${id} until ${new Date(until).toISOString()}: ${Object.entries(matchers)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}${options.expireOnResolve ? ' (or until an alert it matches resolves)' : ''}`,
  };
}
