import type { Event } from '../../ingest/model/index.ts';
import { RuleRunner } from '../runner.ts';
import type { AnyRule } from '../types.ts';
import { type KindDescriptor } from './kind.ts';

/** Fires on every event that passes the filter, subject to `realert`. Holds no windows. */
export class AnyRunner extends RuleRunner<AnyRule, never> {
  protected override readonly resolution = 'after';

  onEvent(event: Event, key: string, t: number): void {
    if (this.isLate(t)) return; // its only instant is decided
    this.rememberKey(key, event);
    this.fire(key, t, { figures: {}, sample: event });
    this.forgetKey(key);
  }

  keyBytes(): number {
    return 0;
  }
  protected encodeKey(): unknown {
    return null;
  }
  protected decodeKey(): never {
    throw new Error('any rules hold no key state');
  }
}

export const anyKind: KindDescriptor<'any'> = {
  type: 'any',
  options: {},
  required: [],
  condition: false,
  build: (_raw, common) => ({ ...common, type: 'any' }),
  runner: (spec, ctx) => new AnyRunner(spec, ctx),
};
