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
export { createAdapters, loadAdapterFactory } from './adapters/registry.ts';
export * from './adapters/types.ts';
export { WebhookAdapter, type WebhookOptions } from './adapters/webhook.ts';
export { type Budget, DEFAULT_GUARDS, type GuardConfig, type MaintenanceWindow } from './guards.ts';
export { type ActionObject, Remediator, type RemediatorOptions } from './remediator.ts';
export {
  ActionStore,
  type Decision,
  type DecisionKind,
  openActionStore,
  type Silence,
} from './store.ts';
export { alertFacts, render, TemplateError } from './template.ts';
