export {
  default as processAdapterFactory,
  freePort,
  ProcessAdapter,
  type Replica,
  type ServiceSpec,
} from './adapters/process.ts';
export { AwsAsgAdapter, type AwsAsgOptions } from './adapters/aws-asg.ts';
export { ExecAdapter, type ExecOptions } from './adapters/exec.ts';
export { KubernetesAdapter, type KubernetesOptions } from './adapters/kubernetes.ts';
export { BUILT_IN_ADAPTERS, createAdapters, loadAdapterFactory } from './adapters/registry.ts';
export * from './adapters/types.ts';
export { WebhookAdapter, type WebhookOptions } from './adapters/webhook.ts';
export { killSwitchCommand, silenceCommand } from './admin.ts';
export {
  type Budget,
  DEFAULT_GUARDS,
  DEFAULT_MAX_ALERT_AGE_MS,
  DEFAULT_NOTIFY_GUARDS,
  DEFAULT_STORM_CAP,
  type GuardConfig,
  GuardConfigError,
  type GuardName,
  INSTANCE_FIELDS,
  type MaintenanceWindow,
  type NotifyGuardConfig,
  type Silence,
  SilenceError,
  type StormCap,
  type Suppression,
} from './guards/index.ts';
export {
  createElasticsearchStore,
  ElasticsearchStore,
  type ElasticsearchStoreOptions,
} from './journal/elasticsearch.ts';
export { boundDecision, DEFAULT_JOURNAL_BOUNDS, type JournalBounds } from './journal/bounds.ts';
export type { PruneResult } from './journal/types.ts';
export { formatDecision, formatJournal, type JournalFormat, listJournal } from './journal/list.ts';
export {
  ActionStore,
  openSqliteStore,
  openSqliteStore as openActionStore,
} from './journal/sqlite.ts';
export type {
  ClaimFence,
  Decision,
  DecisionKind,
  ListOptions,
  RemediationStore,
} from './journal/types.ts';
export { type ActionObject, OPERATIONS, plan, validateAction, whenHolds } from './policy.ts';
export { createRemediator, type Logger, Remediator, type RemediatorOptions } from './remediator.ts';
export { alertFacts, render, TemplateError } from './template.ts';
