/**
 * The adapter interface (docs/actions.md#adapters). Adapters are loaded by name from
 * config, so a third party can ship one as an npm package or a local module.
 */

import type { Alert } from '../../rules/index.ts';

export interface ScaleParams {
  /** Absolute replica count. */
  to?: number;
  /** Relative change, may be negative. */
  by?: number;
  min?: number;
  max?: number;
}

export interface Notification {
  title: string;
  text: string;
  severity: 'info' | 'warning' | 'critical';
  alert?: Record<string, unknown>;
}

export interface ActionContext {
  /** The alert id plus the action's position: the idempotency key for this action. */
  idempotencyKey: string;
  rule: string;
  /** The alert that led to the action (PagerDuty's dedup_key, an exec's environment). */
  alertId?: string;
  alert?: Alert;
  /** Aborted when the remediator stops waiting for the adapter. */
  signal?: AbortSignal;
}

/** The group a target belongs to, for min-healthy floors and blast radius. */
export interface GroupHealth {
  group: string;
  size: number;
  healthy: number;
  /** Desired replicas where the orchestrator has a notion of it. */
  desired?: number;
  members?: Array<{ id: string; healthy: boolean }>;
}

export interface ActionResult {
  /** What the adapter did, for the journal: ids, old/new counts, API responses. */
  detail: Record<string, unknown>;
}

/**
 * Thrown when the orchestrator itself declines to act (a PodDisruptionBudget, an ASG
 * in a scaling activity): the journal records a suppression, not a failure.
 */
export class AdapterDeclined extends Error {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

/**
 * Thrown when a target is not one this adapter may act on: `target` when its form is
 * wrong (charset, length, an option-like `-`, a namespace outside the boundary),
 * `inventory` when it names nothing the adapter knows (no such pod, instance or
 * replica). The journal records a failure with that guard, and nothing is spent: no
 * budget, cooldown or breaker counts it.
 */
export class TargetRefused extends Error {
  constructor(
    message: string,
    readonly guard: 'target' | 'inventory',
  ) {
    super(message);
  }
}

/** The operations that act on a target (notify only reports). */
export type TargetOperation = 'kill-and-replace' | 'scale';

export interface Adapter {
  /** The configured instance name rules refer to (`adapter: fleet`). */
  readonly name: string;
  /** The adapter type (`process`, `kubernetes`, `aws-asg`, `webhook`, `exec`). */
  readonly type: string;
  killAndReplace(target: string, ctx: ActionContext): Promise<ActionResult>;
  scale(target: string, params: ScaleParams, ctx: ActionContext): Promise<ActionResult>;
  notify(notification: Notification, ctx: ActionContext): Promise<ActionResult>;
  describe(target: string): Promise<GroupHealth>;
  /**
   * Checks a rendered target before any guard spends budget on it: its form, and that
   * it exists in the adapter's inventory. Throws TargetRefused; resolves when the
   * adapter may act. Adapters without it are only held to the generic checks.
   */
  admit?(operation: TargetOperation, target: string, signal?: AbortSignal): Promise<void>;
  close?(): Promise<void>;
}

/** What an adapter package exports: `export default { type, create }`. */
export interface AdapterFactory {
  type: string;
  create(name: string, options: Record<string, unknown>): Adapter | Promise<Adapter>;
}
