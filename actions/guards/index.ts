export { checkAlertAge } from './alert-age.ts';
export { checkBudgets } from './budget.ts';
export { checkBreakers } from './breaker.ts';
export { ConcurrencyGate } from './concurrency.ts';
export {
  type Budget,
  DEFAULT_GUARDS,
  DEFAULT_MAX_ALERT_AGE_MS,
  DEFAULT_NOTIFY_GUARDS,
  DEFAULT_STORM_CAP,
  type EffectiveGuards,
  effectiveGuards,
  type GuardConfig,
  GuardConfigError,
  type MaintenanceWindow,
  type NotifyGuardConfig,
  share,
} from './config.ts';
export { checkCooldown } from './cooldown.ts';
export { checkBlastRadius, checkMinHealthy, healthyLoss } from './health.ts';
export {
  checkInhibition,
  checkInhibitors,
  type Inhibitor,
  INSTANCE_FIELDS,
  instanceService,
  serviceWide,
} from './inhibition.ts';
export { checkKillSwitch } from './kill-switch.ts';
export {
  type Attempt,
  INEFFECTIVE_OPERATION,
  keyId,
  type LedgerCounts,
  type LedgerQuery,
} from './ledger.ts';
export { checkMaintenance, isOpen, validateWindow } from './maintenance.ts';
export {
  checkSilences,
  type Silence,
  SilenceError,
  silenceMatches,
  silencesEndedBy,
  validateMatchers,
} from './silence.ts';
export type { GuardName, Suppression } from './types.ts';
export { checkStorm, type StormCap } from './storm.ts';
