import type { Alert } from '../rules/index.ts';
import { CONTROL, shown } from './adapters/target-checks.ts';
import { TargetRefused } from './adapters/types.ts';
import { render } from './template.ts';

/**
 * A rule's target template rendered over an alert whose every field may be an
 * attacker's. The rule's literal text gives the target its structure; a value only
 * fills a slot. So a value may not hold `/` (it would add a namespace or kind segment),
 * a control character or line break, or be longer than MAX_TARGET_VALUE; and the target
 * may not start with `-` (an option, to whatever reads it) unless the template does.
 * Each adapter then checks the target against what it can be (see `Adapter.admit`).
 */

/** A value spliced into a target: a DNS name is at most 253 characters, and so is this. */
export const MAX_TARGET_VALUE = 253;
/** A whole rendered target. */
export const MAX_TARGET = 512;

export function renderTarget(template: string, alert: Alert): string {
  const target = render(template, alert, (name, value) => {
    if (value.length > MAX_TARGET_VALUE)
      throw new TargetRefused(
        `"${name}" is ${value.length} characters long; a value in a target may have ${MAX_TARGET_VALUE}`,
        'target',
      );
    if (CONTROL.test(value))
      throw new TargetRefused(
        `"${name}" (${shown(value)}) holds a control character or line break`,
        'target',
      );
    if (value.includes('/'))
      throw new TargetRefused(
        `"${name}" (${shown(value)}) holds "/": only the rule's template may give a target segments (namespace/kind/name)`,
        'target',
      );
  });
  if (target.length > MAX_TARGET)
    throw new TargetRefused(
      `the target is ${target.length} characters long; at most ${MAX_TARGET}`,
      'target',
    );
  if (target.startsWith('-') && !template.startsWith('-'))
    throw new TargetRefused(
      `${shown(target)} starts with "-": it would be read as an option, not a target`,
      'target',
    );
  return target;
}
