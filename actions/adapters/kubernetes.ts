/**
 * Kubernetes: kill-and-replace through the Eviction API, so PodDisruptionBudgets are
 * respected (the API's 429 is a suppression, not a failure), with DELETE as a fallback
 * only where the eviction subresource does not exist; scale through the Deployment or
 * StatefulSet `scale` subresource with a merge patch, and when a HorizontalPodAutoscaler
 * owns the workload, move its minReplicas instead of fighting it. Credentials and TLS
 * come from a kubeconfig through @kubernetes/client-node's KubeConfig.
 */

import { createRequire } from 'node:module';
import type * as KubeClient from '@kubernetes/client-node';
import { KubeApi, KubeApiError, labelSelectorString, MERGE_PATCH } from './kubernetes-api.ts';
import {
  type ActionContext,
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
  type TargetOperation,
  TargetRefused,
} from './types.ts';
import { shown } from './target-checks.ts';

export interface KubernetesOptions {
  /** Path of a kubeconfig; without it and without `server`, the default (KUBECONFIG, ~/.kube/config, in-cluster). */
  kubeconfig?: string;
  context?: string;
  /** Without a kubeconfig: the API server URL and an optional bearer token. */
  server?: string;
  token?: string;
  /** Default: the context's namespace, else `default`. */
  namespace?: string;
  /**
   * The namespaces a target may name (`NAMESPACE/pod/NAME`); `["*"]` for any. Default:
   * the adapter's own namespace only. A target naming another is refused.
   */
  namespaces?: string[];
  /** The pod label that groups pods without a Deployment/StatefulSet owner (e.g. `app`), for describe. */
  selectorLabel?: string;
  /** `delete`: DELETE the pod where the API has no eviction subresource. Never used to get past a PDB. Default `none`. */
  evictionFallback?: 'delete' | 'none';
  gracePeriodSeconds?: number;
}

type WorkloadKind = 'deployment' | 'statefulset';
const WORKLOAD_KINDS: Record<string, WorkloadKind> = {
  deployment: 'deployment',
  deployments: 'deployment',
  deploy: 'deployment',
  statefulset: 'statefulset',
  statefulsets: 'statefulset',
  sts: 'statefulset',
};
const POD_KINDS = new Set(['pod', 'pods', 'po']);
/** An object name: a DNS subdomain (RFC 1123). Catches unrendered templates and typos early. */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A namespace name: a DNS label (RFC 1123), 63 characters at most, no dots. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

interface Workload {
  /** Absent: the adapter's namespace. */
  namespace?: string;
  kind: WorkloadKind;
  name: string;
}

interface PodObject {
  metadata: {
    name: string;
    uid?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
    ownerReferences?: Array<{ kind: string; name: string; controller?: boolean }>;
  };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** Where the HPA bounds the operator configured are kept while Drover has moved them. */
const ORIGINAL_MIN = 'drover.dev/original-min-replicas';
const ORIGINAL_MAX = 'drover.dev/original-max-replicas';

interface HpaObject {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: {
    minReplicas?: number;
    maxReplicas: number;
    scaleTargetRef: { apiVersion?: string; kind: string; name: string };
  };
}

function checkName(name: string, target: string, what = 'object name', pattern = NAME): string {
  if (!pattern.test(name))
    throw new TargetRefused(
      `${shown(target)}: ${shown(name)} is not a valid Kubernetes ${what}`,
      'target',
    );
  return name;
}

/** `NAME`, `KIND/NAME` or `NAMESPACE/KIND/NAME`. */
function splitTarget(target: string): { namespace?: string; kind?: string; name: string } {
  const parts = target.split('/');
  if (parts.length > 3)
    throw new TargetRefused(
      `${shown(target)} is not NAME, KIND/NAME or NAMESPACE/KIND/NAME`,
      'target',
    );
  const name = checkName(parts.at(-1)!, target);
  if (parts.length === 1) return { name };
  const kind = parts.at(-2)!.toLowerCase();
  if (parts.length === 2) return { kind, name };
  return { namespace: checkName(parts[0]!, target, 'namespace name', NAMESPACE), kind, name };
}

/** `pod/NAME`, `NAMESPACE/pod/NAME` or a bare pod name. */
export function parsePodTarget(target: string): { namespace?: string; name: string } {
  const { namespace, kind, name } = splitTarget(target);
  if (kind !== undefined && !POD_KINDS.has(kind))
    throw new TargetRefused(
      `kill-and-replace acts on pods: ${shown(target)} is not pod/NAME, NAMESPACE/pod/NAME or a pod name`,
      'target',
    );
  return { ...(namespace && { namespace }), name };
}

/** `deployment/NAME`, `statefulset/NAME` (either after `NAMESPACE/`) or a bare deployment name. */
export function parseWorkloadTarget(target: string): Workload {
  const { namespace, kind, name } = splitTarget(target);
  const workloadKind = kind === undefined ? 'deployment' : WORKLOAD_KINDS[kind];
  if (!workloadKind)
    throw new TargetRefused(
      `${shown(target)} is not deployment/NAME or statefulset/NAME (optionally after NAMESPACE/)`,
      'target',
    );
  return { ...(namespace && { namespace }), kind: workloadKind, name };
}

const OPTION_NAMES = new Set([
  'kubeconfig',
  'context',
  'server',
  'token',
  'namespace',
  'namespaces',
  'selectorLabel',
  'evictionFallback',
  'gracePeriodSeconds',
]);

/** Checks the configured options, so a typo fails at start-up and not at the first incident. */
export function validateKubernetesOptions(name: string, raw: Record<string, unknown>): void {
  const where = `kubernetes adapter "${name}"`;
  for (const key of Object.keys(raw))
    if (!OPTION_NAMES.has(key))
      throw new Error(`${where}: unknown option "${key}" (known: ${[...OPTION_NAMES].join(', ')})`);
  for (const key of ['kubeconfig', 'context', 'server', 'token', 'namespace', 'selectorLabel'])
    if (raw[key] !== undefined && (typeof raw[key] !== 'string' || raw[key] === ''))
      throw new Error(`${where}: ${key} must be a non-empty string`);
  if (
    raw.evictionFallback !== undefined &&
    !['delete', 'none'].includes(raw.evictionFallback as string)
  )
    throw new Error(`${where}: evictionFallback must be "delete" or "none"`);
  const grace = raw.gracePeriodSeconds;
  if (grace !== undefined && !(Number.isInteger(grace) && (grace as number) >= 0))
    throw new Error(`${where}: gracePeriodSeconds must be a whole number of seconds, 0 or more`);
  if (raw.namespace !== undefined && !NAMESPACE.test(raw.namespace as string))
    throw new Error(`${where}: namespace "${String(raw.namespace)}" is not a valid namespace name`);
  const list = raw.namespaces;
  if (
    list !== undefined &&
    (!Array.isArray(list) ||
      list.length === 0 ||
      !list.every((n) => typeof n === 'string' && (n === '*' || NAMESPACE.test(n))))
  )
    throw new Error(`${where}: namespaces must be a non-empty list of namespace names, or ["*"]`);
  if (raw.kubeconfig !== undefined && raw.server !== undefined)
    throw new Error(`${where}: give either kubeconfig or server, not both`);
}

/** `kubectl proxy` serves plain HTTP on loopback; nothing else should get a token in clear. */
function plainLoopback(server: string): boolean {
  const url = new URL(server);
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

function checkScaleParams(params: ScaleParams): void {
  const whole = (v: unknown) => v === undefined || Number.isInteger(v);
  if (params.to === undefined && params.by === undefined)
    throw new Error('scale needs params.to (replicas) or params.by (a change)');
  for (const key of ['to', 'by', 'min', 'max'] as const)
    if (!whole(params[key])) throw new Error(`scale: params.${key} must be a whole number`);
  if (params.to !== undefined && params.to < 0)
    throw new Error('scale: params.to must be 0 or more');
  if (params.min !== undefined && params.max !== undefined && params.min > params.max)
    throw new Error(`scale: params.min (${params.min}) is above params.max (${params.max})`);
}

// The client library takes about a second to import: it is loaded when a Kubernetes
// adapter is first made, not when Drover starts.
const requireLib = createRequire(import.meta.url);
let kubeClientLib: typeof KubeClient | undefined;
function kubeClient(): typeof KubeClient {
  return (kubeClientLib ??= requireLib('@kubernetes/client-node') as typeof KubeClient);
}

export class KubernetesAdapter implements Adapter {
  readonly type = 'kubernetes';
  readonly namespace: string;
  /** Undefined: any namespace (`namespaces: ["*"]`). */
  private readonly namespaces: ReadonlySet<string> | undefined;
  private readonly api: KubeApi;

  constructor(
    readonly name: string,
    private readonly options: KubernetesOptions,
  ) {
    validateKubernetesOptions(name, options as Record<string, unknown>);
    const kc = new (kubeClient().KubeConfig)();
    if (options.kubeconfig) kc.loadFromFile(options.kubeconfig);
    else if (options.server) {
      kc.loadFromOptions({
        clusters: [
          { name: 'drover', server: options.server, skipTLSVerify: plainLoopback(options.server) },
        ],
        users: [{ name: 'drover', ...(options.token && { token: options.token }) }],
        contexts: [{ name: 'drover', cluster: 'drover', user: 'drover' }],
        currentContext: 'drover',
      });
    } else kc.loadFromDefault();
    if (options.context) {
      if (!kc.getContextObject(options.context))
        throw new Error(
          `kubernetes adapter "${name}": no context "${options.context}" in the kubeconfig (has: ${kc.contexts.map((c) => c.name).join(', ') || 'none'})`,
        );
      kc.setCurrentContext(options.context);
    }
    const cluster = kc.getCurrentCluster();
    if (!cluster)
      throw new Error(`kubernetes adapter "${name}": the kubeconfig has no current cluster`);
    // @kubernetes/client-node refuses plain HTTP unless the cluster opts in, so that a
    // token is never sent in clear by accident; say so at start-up rather than per call.
    if (cluster.server.startsWith('http:') && !cluster.skipTLSVerify)
      throw new Error(
        options.server
          ? `kubernetes adapter "${name}": plain HTTP is only allowed to a loopback address (kubectl proxy); use https for ${cluster.server}`
          : `kubernetes adapter "${name}": cluster "${cluster.name}" is plain HTTP (${cluster.server}); set insecure-skip-tls-verify: true on it in the kubeconfig to allow that`,
      );
    this.namespace =
      options.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
    this.namespaces = options.namespaces?.includes('*')
      ? undefined
      : new Set(options.namespaces ?? [this.namespace]);
    this.api = new KubeApi(kc);
  }

  /** Every API path is built here, so no call reaches a namespace outside the boundary. */
  private ns(namespace: string | undefined, path: string): string {
    const ns = namespace ?? this.namespace;
    if (this.namespaces && !this.namespaces.has(ns))
      throw new TargetRefused(
        `namespace ${shown(ns)} is outside the kubernetes adapter "${this.name}"'s namespaces (${[...this.namespaces].join(', ')})`,
        'target',
      );
    return `/namespaces/${ns}/${path}`;
  }

  /**
   * The target's form and namespace, then the inventory: the pod (kill-and-replace) or
   * the workload (scale) must exist there. A 404 is a refusal; other API errors fail.
   */
  async admit(operation: TargetOperation, target: string, signal?: AbortSignal): Promise<void> {
    let path: string;
    if (operation === 'kill-and-replace') {
      const { namespace, name } = parsePodTarget(target);
      path = `/api/v1${this.ns(namespace, `pods/${name}`)}`;
    } else path = this.workloadPath(parseWorkloadTarget(target));
    try {
      await this.api.request('GET', path, { signal });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404)
        throw new TargetRefused(`${shown(target)} does not exist (${path})`, 'inventory');
      throw err;
    }
  }

  private workloadPath(w: Workload): string {
    return `/apis/apps/v1${this.ns(w.namespace, `${w.kind}s/${w.name}`)}`;
  }

  /** `kind/name`, prefixed with the namespace when it is not the adapter's. */
  private label(namespace: string | undefined, kindAndName: string): string {
    return namespace && namespace !== this.namespace ? `${namespace}/${kindAndName}` : kindAndName;
  }

  /**
   * Evicts the pod so its controller replaces it. The pod is read first: one without a
   * controller (a bare pod) would be killed and never replaced, so it is refused, and its
   * uid goes along as a precondition so a StatefulSet pod recreated under the same name
   * in the meantime is not the one that goes.
   */
  async killAndReplace(target: string, ctx?: ActionContext): Promise<ActionResult> {
    const { namespace = this.namespace, name: pod } = parsePodTarget(target);
    const podPath = `/api/v1${this.ns(namespace, `pods/${pod}`)}`;
    const signal = ctx?.signal;
    const existing = await this.api.request<PodObject>('GET', podPath, { signal });
    const { uid } = existing.metadata;
    const controller = existing.metadata.ownerReferences?.find((o) => o.controller);
    if (!controller)
      throw new Error(
        `pod ${pod} has no controller (ReplicaSet, StatefulSet, DaemonSet...) that would replace it: not killing it`,
      );
    const grace = this.options.gracePeriodSeconds;
    const deleteOptions = {
      preconditions: { uid },
      ...(grace !== undefined && { gracePeriodSeconds: grace }),
    };
    const detail = {
      pod,
      namespace,
      uid,
      owner: `${controller.kind}/${controller.name}`,
    };
    try {
      await this.api.request('POST', `${podPath}/eviction`, {
        body: {
          apiVersion: 'policy/v1',
          kind: 'Eviction',
          metadata: { name: pod, namespace },
          deleteOptions,
        },
        signal,
      });
      return { detail: { ...detail, via: 'eviction' } };
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err;
      if (err.status === 429) throw declined(err);
      // The pod existed a moment ago: a 404 naming it means it went meanwhile; one that does
      // not, like a 405, means the API server has no eviction subresource.
      if (err.status !== 404 && err.status !== 405) throw err;
      if (err.status === 404 && err.body.details?.name === pod) throw err;
      if (this.options.evictionFallback !== 'delete')
        throw new Error(
          `the API server has no eviction subresource for pods (${err.status}) and evictionFallback is not "delete": pod ${pod} left running`,
        );
    }
    await this.api.request('DELETE', podPath, {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', ...deleteOptions },
      signal,
    });
    return { detail: { ...detail, via: 'delete' } };
  }

  async scale(target: string, params: ScaleParams, ctx?: ActionContext): Promise<ActionResult> {
    checkScaleParams(params);
    const workload = parseWorkloadTarget(target);
    const label = this.label(workload.namespace, `${workload.kind}/${workload.name}`);
    const scalePath = `${this.workloadPath(workload)}/scale`;
    const scale = await this.api.request<{ spec?: { replicas?: number } }>('GET', scalePath, {
      signal: ctx?.signal,
    });
    const current = scale.spec?.replicas ?? 0;
    const requested = params.to ?? current + (params.by ?? 0);
    const to = Math.max(
      params.min ?? 0,
      Math.min(params.max ?? Number.POSITIVE_INFINITY, requested),
    );

    const hpa = await this.hpaFor(workload, ctx?.signal);
    if (hpa) return this.moveHpaFloor(hpa, workload, label, current, requested, to, ctx?.signal);
    if (to === current)
      return {
        detail: { workload: label, via: 'scale', from: current, to, requested, changed: false },
      };
    await this.api.request('PATCH', scalePath, {
      body: { spec: { replicas: to } },
      contentType: MERGE_PATCH,
      signal: ctx?.signal,
    });
    return {
      detail: { workload: label, via: 'scale', from: current, to, requested, changed: true },
    };
  }

  /**
   * The autoscaler owns the replica count: setting it on the scale subresource would be
   * undone at the HPA's next sync. Its floor is what Drover moves, raising maxReplicas too
   * when the floor would pass it (`to` is already within the rule's max). The bounds the
   * operator configured are kept in annotations the first time Drover moves them, so a
   * later scale-down returns to them and never goes below the operator's own floor.
   */
  private async moveHpaFloor(
    hpa: HpaObject,
    target: Workload,
    workload: string,
    replicas: number,
    requested: number,
    to: number,
    signal?: AbortSignal,
  ): Promise<ActionResult> {
    const annotations = hpa.metadata.annotations ?? {};
    const fromMin = hpa.spec.minReplicas ?? 1;
    const fromMax = hpa.spec.maxReplicas;
    const saved = (key: string, current: number) => {
      const n = Number(annotations[key]);
      return Number.isInteger(n) && n >= 1 ? n : current;
    };
    const configuredMin = saved(ORIGINAL_MIN, fromMin);
    const configuredMax = saved(ORIGINAL_MAX, fromMax);
    const minReplicas = Math.max(1, configuredMin, to);
    const maxReplicas = Math.max(configuredMax, minReplicas);
    const detail = {
      workload,
      via: 'hpa',
      hpa: hpa.metadata.name,
      replicas,
      requested,
      minReplicas: { from: fromMin, to: minReplicas },
      maxReplicas: { from: fromMax, to: maxReplicas },
      configured: { minReplicas: configuredMin, maxReplicas: configuredMax },
      changed: minReplicas !== fromMin || maxReplicas !== fromMax,
    };
    if (!detail.changed) return { detail };
    // Remember the operator's bound while it is moved, forget it once it is back.
    const note: Record<string, string | null> = {};
    const remember = (key: string, configured: number, now: number) => {
      const want = now === configured ? null : String(configured);
      if ((annotations[key] ?? null) !== want) note[key] = want;
    };
    remember(ORIGINAL_MIN, configuredMin, minReplicas);
    remember(ORIGINAL_MAX, configuredMax, maxReplicas);
    const spec = {
      minReplicas,
      ...(maxReplicas !== fromMax && { maxReplicas }),
    };
    await this.api.request(
      'PATCH',
      `/apis/autoscaling/v2${this.ns(target.namespace, `horizontalpodautoscalers/${hpa.metadata.name}`)}`,
      {
        body: { ...(Object.keys(note).length > 0 && { metadata: { annotations: note } }), spec },
        contentType: MERGE_PATCH,
        signal,
      },
    );
    return { detail };
  }

  private async hpaFor(w: Workload, signal?: AbortSignal): Promise<HpaObject | undefined> {
    const list = await this.api.request<{ items?: HpaObject[] }>(
      'GET',
      `/apis/autoscaling/v2${this.ns(w.namespace, 'horizontalpodautoscalers')}`,
      { signal },
    );
    const kind = w.kind === 'deployment' ? 'Deployment' : 'StatefulSet';
    return list.items?.find(
      (h) =>
        h.spec.scaleTargetRef.kind === kind &&
        h.spec.scaleTargetRef.name === w.name &&
        (h.spec.scaleTargetRef.apiVersion ?? 'apps/v1').startsWith('apps/'),
    );
  }

  /**
   * The group a target belongs to. A pod (`pod/NAME`, or a bare name naming a pod) is
   * traced through its controller owner (ReplicaSet → Deployment, or StatefulSet); a bare
   * name that is no pod is a Deployment. Members are named the way the target names its
   * pod (`NAME`, `pod/NAME`, `NAMESPACE/pod/NAME`), so a caller finds the target among them.
   */
  async describe(target: string): Promise<GroupHealth> {
    const { kind } = splitTarget(target);
    if (kind === undefined || POD_KINDS.has(kind)) {
      const { namespace, name } = parsePodTarget(target);
      const pod = await this.api
        .request<PodObject>('GET', `/api/v1${this.ns(namespace, `pods/${name}`)}`)
        .catch((err: unknown) => {
          if (kind === undefined && err instanceof KubeApiError && err.status === 404)
            return undefined;
          throw err;
        });
      if (pod) {
        const health = await this.describePodGroup(pod, namespace);
        const prefix = target.slice(0, target.lastIndexOf('/') + 1);
        return { ...health, members: health.members?.map((m) => ({ ...m, id: prefix + m.id })) };
      }
    }
    return this.describeWorkload(parseWorkloadTarget(target));
  }

  private async describePodGroup(pod: PodObject, namespace?: string): Promise<GroupHealth> {
    const owner = pod.metadata.ownerReferences?.find((o) => o.controller);
    if (owner?.kind === 'StatefulSet')
      return this.describeWorkload({ namespace, kind: 'statefulset', name: owner.name });
    if (owner?.kind === 'ReplicaSet') {
      const rs = await this.api.request<PodObject>(
        'GET',
        `/apis/apps/v1${this.ns(namespace, `replicasets/${owner.name}`)}`,
      );
      const deployment = rs.metadata.ownerReferences?.find(
        (o) => o.controller && o.kind === 'Deployment',
      );
      if (deployment)
        return this.describeWorkload({ namespace, kind: 'deployment', name: deployment.name });
    }
    const label = this.options.selectorLabel;
    const value = label ? pod.metadata.labels?.[label] : undefined;
    if (!label || value === undefined)
      throw new Error(
        `pod ${pod.metadata.name} is owned by no Deployment or StatefulSet${owner ? ` (its controller is ${owner.kind}/${owner.name})` : ''}${label ? ` and has no "${label}" label` : '; set selectorLabel to group such pods by a label'}`,
      );
    const selector = `${label}=${value}`;
    return this.describePods(namespace, selector, this.label(namespace, selector));
  }

  private async describeWorkload(w: Workload): Promise<GroupHealth> {
    const object = await this.api.request<{ spec: { replicas?: number; selector: LabelSelector } }>(
      'GET',
      this.workloadPath(w),
    );
    return this.describePods(
      w.namespace,
      labelSelectorString(object.spec.selector),
      this.label(w.namespace, `${w.kind}/${w.name}`),
      object.spec.replicas,
    );
  }

  private async describePods(
    namespace: string | undefined,
    selector: string,
    group: string,
    desired?: number,
  ): Promise<GroupHealth> {
    const pods = await this.api.request<{ items: PodObject[] }>(
      'GET',
      `/api/v1${this.ns(namespace, 'pods')}?labelSelector=${encodeURIComponent(selector)}`,
    );
    // Finished pods are no longer members; terminating ones are members that are not healthy.
    const members = pods.items
      .filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
      .map((p) => ({
        id: p.metadata.name,
        healthy:
          !p.metadata.deletionTimestamp &&
          (p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false),
      }));
    return {
      group,
      size: members.length,
      healthy: members.filter((m) => m.healthy).length,
      ...(desired !== undefined && { desired }),
      members,
    };
  }

  async notify(_n: Notification): Promise<ActionResult> {
    throw new Error(
      `the kubernetes adapter "${this.name}" cannot notify: configure a webhook or exec adapter for notify`,
    );
  }
}

/**
 * A 429 on eviction: a PodDisruptionBudget that would be violated (the API names it in
 * the Status causes), or API priority and fairness throttling. Either way the cluster
 * said "not now".
 */
function declined(err: KubeApiError): AdapterDeclined {
  const causes = err.body.details?.causes ?? [];
  const budget =
    causes.some((c) => c.reason === 'DisruptionBudget') ||
    /disruption budget/i.test(err.body.message ?? '');
  const because = causes.map((c) => c.message).filter(Boolean);
  return new AdapterDeclined(
    `${err.body.message ?? 'eviction refused'}${because.length ? ` (${because.join('; ')})` : ''}`,
    budget ? 'pod-disruption-budget' : 'api-throttled',
  );
}

const factory: AdapterFactory = {
  type: 'kubernetes',
  create: (name, options) => new KubernetesAdapter(name, options),
};
export default factory;
