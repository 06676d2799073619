import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import {
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
} from './types.ts';

/**
 * Kubernetes: kill-and-replace through the Eviction API, so PodDisruptionBudgets are
 * respected (the API's 429 is a suppression, not a failure), with DELETE as a fallback
 * only where the eviction subresource does not exist; scale through the Deployment or
 * StatefulSet `scale` subresource with a merge patch; and when a HorizontalPodAutoscaler
 * owns the workload, raise its minReplicas instead of fighting it. Credentials and TLS
 * come from a kubeconfig through @kubernetes/client-node's KubeConfig.
 */
export interface KubernetesOptions {
  kubeconfig?: string;
  context?: string;
  /** Without a kubeconfig: the API server URL (and an optional bearer token). */
  server?: string;
  token?: string;
  namespace?: string;
  evictionFallback?: 'delete' | 'none';
  gracePeriodSeconds?: number;
}

interface Status {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Status,
  ) {
    super(
      `Kubernetes API ${status}${body.reason ? ` ${body.reason}` : ''}: ${body.message ?? 'request failed'}`,
    );
  }
}

export class KubernetesAdapter implements Adapter {
  readonly type = 'kubernetes';
  private readonly kc = new KubeConfig();
  private readonly namespace: string;

  constructor(
    readonly name: string,
    private readonly options: KubernetesOptions,
  ) {
    if (options.kubeconfig) {
      this.kc.loadFromFile(options.kubeconfig);
      if (options.context) this.kc.setCurrentContext(options.context);
    } else if (options.server) {
      this.kc.loadFromOptions({
        clusters: [{ name: 'drover', server: options.server, skipTLSVerify: false }],
        users: [{ name: 'drover', token: options.token }],
        contexts: [{ name: 'drover', cluster: 'drover', user: 'drover' }],
        currentContext: 'drover',
      });
    } else {
      this.kc.loadFromDefault();
    }
    this.namespace =
      options.namespace ??
      this.kc.getContextObject(this.kc.getCurrentContext())?.namespace ??
      'default';
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster)
      throw new Error(`kubernetes adapter ${this.name}: no current cluster in the kubeconfig`);
    const url = new URL(path, cluster.server);
    const opts: RequestOptions = { method, headers: { accept: 'application/json' } };
    await this.kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined)
      Object.assign(opts.headers!, {
        'content-type': contentType,
        'content-length': Buffer.byteLength(payload),
      });
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const req = send(url, opts, (res) => {
          let data = '';
          res.on('data', (d: Buffer) => (data += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: data }));
        });
        req.on('error', reject);
        req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
        req.end(payload);
      },
    );
    const parsed = text ? (JSON.parse(text) as unknown) : {};
    if (status >= 400) throw new ApiError(status, parsed as Status);
    return parsed as T;
  }

  /** Targets: `pod/NAME` or a bare pod name; `deployment/NAME`, `statefulset/NAME` or a bare deployment name. */
  private workload(target: string): { kind: 'deployments' | 'statefulsets'; name: string } {
    const [kind, name] = target.includes('/') ? target.split('/', 2) : ['deployment', target];
    if (kind === 'deployment' || kind === 'deploy') return { kind: 'deployments', name: name! };
    if (kind === 'statefulset' || kind === 'sts') return { kind: 'statefulsets', name: name! };
    throw new Error(`"${target}" is not a deployment/NAME or statefulset/NAME`);
  }

  async killAndReplace(target: string): Promise<ActionResult> {
    const pod = target.startsWith('pod/') ? target.slice(4) : target;
    const base = `/api/v1/namespaces/${this.namespace}/pods/${encodeURIComponent(pod)}`;
    const eviction = {
      apiVersion: 'policy/v1',
      kind: 'Eviction',
      metadata: { name: pod, namespace: this.namespace },
      ...(this.options.gracePeriodSeconds !== undefined && {
        deleteOptions: { gracePeriodSeconds: this.options.gracePeriodSeconds },
      }),
    };
    try {
      await this.call('POST', `${base}/eviction`, eviction);
      return { detail: { pod, namespace: this.namespace, via: 'eviction' } };
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 429)
        throw new AdapterDeclined(err.body.message ?? 'eviction refused', 'pod-disruption-budget');
      if (err.status !== 404 && err.status !== 405) throw err;
      // 404 is also "no such pod": only a pod that exists means the subresource is missing.
      await this.call('GET', base);
      if (this.options.evictionFallback !== 'delete') {
        throw new Error(
          `the API server has no eviction subresource and evictionFallback is not "delete": ${err.message}`,
        );
      }
      const query =
        this.options.gracePeriodSeconds !== undefined
          ? `?gracePeriodSeconds=${this.options.gracePeriodSeconds}`
          : '';
      await this.call('DELETE', `${base}${query}`);
      return { detail: { pod, namespace: this.namespace, via: 'delete' } };
    }
  }

  async scale(target: string, params: ScaleParams): Promise<ActionResult> {
    const { kind, name } = this.workload(target);
    const scalePath = `/apis/apps/v1/namespaces/${this.namespace}/${kind}/${encodeURIComponent(name)}/scale`;
    const current =
      (await this.call<{ spec?: { replicas?: number } }>('GET', scalePath)).spec?.replicas ?? 0;
    const wanted = params.to ?? current + (params.by ?? 0);
    const to = Math.max(params.min ?? 0, Math.min(params.max ?? Number.POSITIVE_INFINITY, wanted));
    const hpa = await this.hpaFor(kind, name);
    if (hpa) {
      // The autoscaler owns replicas: move its floor (and ceiling, within max) instead.
      const min = hpa.spec.minReplicas ?? 1;
      const max = hpa.spec.maxReplicas;
      const patch = {
        spec: { minReplicas: Math.min(to, params.max ?? to), ...(to > max && { maxReplicas: to }) },
      };
      await this.call(
        'PATCH',
        `/apis/autoscaling/v2/namespaces/${this.namespace}/horizontalpodautoscalers/${hpa.metadata.name}`,
        patch,
        'application/merge-patch+json',
      );
      return {
        detail: {
          workload: `${kind}/${name}`,
          via: 'hpa',
          hpa: hpa.metadata.name,
          minReplicas: { from: min, to: patch.spec.minReplicas },
          replicas: current,
        },
      };
    }
    await this.call('PATCH', scalePath, { spec: { replicas: to } }, 'application/merge-patch+json');
    return {
      detail: { workload: `${kind}/${name}`, via: 'scale', from: current, to, requested: wanted },
    };
  }

  private async hpaFor(kind: string, name: string) {
    const list = await this.call<{
      items?: Array<{
        metadata: { name: string };
        spec: {
          minReplicas?: number;
          maxReplicas: number;
          scaleTargetRef: { kind: string; name: string };
        };
      }>;
    }>('GET', `/apis/autoscaling/v2/namespaces/${this.namespace}/horizontalpodautoscalers`);
    const wantedKind = kind === 'deployments' ? 'Deployment' : 'StatefulSet';
    return list.items?.find(
      (h) => h.spec.scaleTargetRef.kind === wantedKind && h.spec.scaleTargetRef.name === name,
    );
  }

  async describe(target: string): Promise<GroupHealth> {
    let workload: { kind: 'deployments' | 'statefulsets'; name: string };
    if (target.startsWith('pod/') || !target.includes('/')) {
      // A pod: its group is the workload owning it, found through its labels.
      const pod = await this.call<{
        metadata: {
          labels?: Record<string, string>;
          ownerReferences?: Array<{ kind: string; name: string }>;
        };
      }>(
        'GET',
        `/api/v1/namespaces/${this.namespace}/pods/${encodeURIComponent(target.replace(/^pod\//, ''))}`,
      ).catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 404 && !target.startsWith('pod/'))
          return undefined;
        throw err;
      });
      const app = pod?.metadata.labels?.app;
      workload = pod && app ? { kind: 'deployments', name: app } : this.workload(target);
    } else workload = this.workload(target);
    const w = await this.call<{
      spec: { replicas?: number; selector: { matchLabels?: Record<string, string> } };
    }>(
      'GET',
      `/apis/apps/v1/namespaces/${this.namespace}/${workload.kind}/${encodeURIComponent(workload.name)}`,
    );
    const selector = Object.entries(w.spec.selector.matchLabels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const pods = await this.call<{
      items: Array<{
        metadata: { name: string };
        status?: { conditions?: Array<{ type: string; status: string }> };
      }>;
    }>(
      'GET',
      `/api/v1/namespaces/${this.namespace}/pods?labelSelector=${encodeURIComponent(selector)}`,
    );
    const members = pods.items.map((p) => ({
      id: p.metadata.name,
      healthy:
        p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    }));
    return {
      group: `${workload.kind}/${workload.name}`,
      size: members.length,
      healthy: members.filter((m) => m.healthy).length,
      desired: w.spec.replicas,
      members,
    };
  }

  async notify(_n: Notification): Promise<ActionResult> {
    throw new Error(
      `the kubernetes adapter ${this.name} cannot notify: configure a webhook or exec adapter for notify`,
    );
  }
}

const factory: AdapterFactory = {
  type: 'kubernetes',
  create: (name, options) => new KubernetesAdapter(name, options as KubernetesOptions),
};
export default factory;
