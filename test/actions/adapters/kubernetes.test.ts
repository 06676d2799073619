import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ActionContext, AdapterDeclined } from '../../../actions/adapters/types.ts';
import kubernetesFactory, { KubernetesAdapter } from '../../../actions/adapters/kubernetes.ts';
import { type FakeKubeApi, startKubeApi, TEST_TLS } from '../fixtures/k8s-api-server.ts';

const TOKEN = 'drover-sa-token';
const ctx: ActionContext = { idempotencyKey: 'alert-1', rule: 'web-crashloop' };
const running: FakeKubeApi[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((api) => api.close()));
});

/** A kubeconfig file as kubectl writes it: the local server, a token user, two contexts. */
function kubeconfig(url: string, token = TOKEN, insecure = true): string {
  const file = join(mkdtempSync(join(tmpdir(), 'drover-kube-')), 'config');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: { server: "${url}", insecure-skip-tls-verify: ${insecure} }
users:
  - name: drover
    user: { token: ${token} }
contexts:
  - name: local
    context: { cluster: local, user: drover, namespace: default }
  - name: staging
    context: { cluster: local, user: drover, namespace: staging }
current-context: local
`,
  );
  return file;
}

/** web: a Deployment of 3, db: a StatefulSet of 2, the adapter reading a real kubeconfig file. */
async function cluster(options: Record<string, unknown> = {}) {
  const api = await startKubeApi({ token: TOKEN });
  running.push(api);
  api.addDeployment('web', 3);
  api.addStatefulSet('db', 2);
  const k8s = new KubernetesAdapter('k8s', { kubeconfig: kubeconfig(api.url), ...options });
  return { api, k8s };
}

const calls = (api: FakeKubeApi) => api.requests.map((r) => `${r.method} ${r.path}`);

describe('kubernetes adapter: kill-and-replace', () => {
  it('posts a policy/v1 Eviction with the kubeconfig credentials; the ReplicaSet replaces the pod', async () => {
    const { api, k8s } = await cluster({ gracePeriodSeconds: 20 });
    const [victim, ...others] = api.podNames('web-');
    const uid = api.pod(victim!)!.metadata.uid;
    const result = await k8s.killAndReplace(`pod/${victim}`, ctx);
    expect(result.detail).toEqual({
      pod: victim,
      namespace: 'default',
      uid,
      owner: 'ReplicaSet/web-7d9f8b6c5d',
      via: 'eviction',
    });
    expect(api.requests).toEqual([
      {
        method: 'GET',
        path: `/api/v1/namespaces/default/pods/${victim}`,
        query: {},
        authorization: `Bearer ${TOKEN}`,
        user: 'token',
      },
      {
        method: 'POST',
        path: `/api/v1/namespaces/default/pods/${victim}/eviction`,
        query: {},
        contentType: 'application/json',
        authorization: `Bearer ${TOKEN}`,
        user: 'token',
        body: {
          apiVersion: 'policy/v1',
          kind: 'Eviction',
          metadata: { name: victim, namespace: 'default' },
          deleteOptions: { preconditions: { uid }, gracePeriodSeconds: 20 },
        },
      },
    ]);
    const now = api.podNames('web-');
    expect(now).not.toContain(victim);
    expect(now).toEqual(expect.arrayContaining(others));
    expect(now).toHaveLength(3);
  });

  it('a PodDisruptionBudget 429 is a suppression (AdapterDeclined), and never falls back to delete', async () => {
    const { api, k8s } = await cluster({ evictionFallback: 'delete' });
    api.addPdb('web-pdb', { matchLabels: { app: 'web' } }, { minAvailable: 3 });
    const victim = api.podNames('web-')[1]!;
    const err = await k8s.killAndReplace(victim, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterDeclined);
    expect((err as AdapterDeclined).reason).toBe('pod-disruption-budget');
    expect((err as Error).message).toBe(
      "Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget web-pdb needs 3 healthy pods and has 3 currently)",
    );
    expect(calls(api)).toEqual([
      `GET /api/v1/namespaces/default/pods/${victim}`,
      `POST /api/v1/namespaces/default/pods/${victim}/eviction`,
    ]);
    expect(api.podNames('web-')).toContain(victim);
  });

  it('a budget allowing one disruption: the first eviction passes, the next waits for the replacement to be Ready', async () => {
    const { api, k8s } = await cluster();
    api.addPdb('web-pdb', { matchLabels: { app: 'web' } }, { maxUnavailable: 1 });
    api.replacementsReady = false;
    const before = api.podNames('web-');
    const [first, second] = before;
    await k8s.killAndReplace(first!, ctx);
    const [replacement] = api.podNames('web-').filter((n) => !before.includes(n));
    expect(api.pod(replacement!)!.status.conditions).toContainEqual({
      type: 'Ready',
      status: 'False',
    });
    await expect(k8s.killAndReplace(second!, ctx)).rejects.toBeInstanceOf(AdapterDeclined);
    // The replacement that is not Ready yet may itself go: the budget is met without it.
    await expect(k8s.killAndReplace(replacement!, ctx)).resolves.toMatchObject({
      detail: { via: 'eviction' },
    });
  });

  it('API throttling (429 without a disruption budget) is also a suppression', async () => {
    const { api, k8s } = await cluster();
    api.faults.push({
      method: 'POST',
      path: /\/eviction$/,
      code: 429,
      reason: 'TooManyRequests',
      message: 'Too many requests, please try again later.',
    });
    const err = await k8s.killAndReplace(api.podNames('web-')[0]!, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterDeclined);
    expect((err as AdapterDeclined).reason).toBe('api-throttled');
  });

  it.each(['not-found', 'method-not-allowed'] as const)(
    'falls back to DELETE (uid precondition, grace period) where the eviction subresource is missing (%s)',
    async (mode) => {
      const { api, k8s } = await cluster({ evictionFallback: 'delete', gracePeriodSeconds: 5 });
      api.eviction = mode;
      const victim = api.podNames('web-')[0]!;
      const uid = api.pod(victim)!.metadata.uid;
      const result = await k8s.killAndReplace(victim, ctx);
      expect(result.detail).toEqual({
        pod: victim,
        namespace: 'default',
        uid,
        owner: 'ReplicaSet/web-7d9f8b6c5d',
        via: 'delete',
      });
      expect(calls(api)).toEqual([
        `GET /api/v1/namespaces/default/pods/${victim}`,
        `POST /api/v1/namespaces/default/pods/${victim}/eviction`,
        `DELETE /api/v1/namespaces/default/pods/${victim}`,
      ]);
      expect(api.requests[2]!.body).toEqual({
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        preconditions: { uid },
        gracePeriodSeconds: 5,
      });
      expect(api.podNames('web-')).not.toContain(victim);
      expect(api.podNames('web-')).toHaveLength(3);
    },
  );

  it('without evictionFallback: delete, a missing eviction subresource is a failure and the pod stays', async () => {
    const { api, k8s } = await cluster();
    api.eviction = 'not-found';
    const victim = api.podNames('web-')[0]!;
    await expect(k8s.killAndReplace(victim, ctx)).rejects.toThrow(
      `the API server has no eviction subresource for pods (404) and evictionFallback is not "delete": pod ${victim} left running`,
    );
    expect(api.requests.map((r) => r.method)).not.toContain('DELETE');
    expect(api.podNames('web-')).toContain(victim);
  });

  it('a pod that does not exist is a failure, not a reason to delete', async () => {
    const { api, k8s } = await cluster({ evictionFallback: 'delete' });
    await expect(k8s.killAndReplace('web-gone', ctx)).rejects.toThrow(
      'Kubernetes API GET /api/v1/namespaces/default/pods/web-gone: 404 NotFound: pods "web-gone" not found',
    );
    expect(api.requests.map((r) => r.method)).toEqual(['GET']);
  });

  it('a pod without a controller is not killed: nothing would replace it', async () => {
    const { api, k8s } = await cluster({ evictionFallback: 'delete' });
    api.addBarePod('debug-shell', { app: 'web' });
    await expect(k8s.killAndReplace('debug-shell', ctx)).rejects.toThrow(
      'pod debug-shell has no controller (ReplicaSet, StatefulSet, DaemonSet...) that would replace it: not killing it',
    );
    expect(calls(api)).toEqual(['GET /api/v1/namespaces/default/pods/debug-shell']);
    expect(api.pod('debug-shell')).toBeDefined();
  });

  it('a StatefulSet pod is evicted and recreated under the same name', async () => {
    const { api, k8s } = await cluster();
    const uid = api.pod('db-1')!.metadata.uid;
    await k8s.killAndReplace('pod/db-1', ctx);
    expect(api.pod('db-1')!.metadata.uid).not.toBe(uid);
  });

  it('a StatefulSet pod recreated between the read and the eviction is left alone (uid precondition)', async () => {
    const { api, k8s } = await cluster();
    api.beforeRequest = (r) => {
      if (r.method === 'POST') api.restartPod('db-0');
    };
    await expect(k8s.killAndReplace('db-0', ctx)).rejects.toThrow(
      /409 Conflict: Operation cannot be fulfilled on Pod "db-0": Precondition failed: UID in precondition/,
    );
    expect(api.pod('db-0')).toBeDefined();
  });

  it('targets that are not pods, or not names, are refused before any request', async () => {
    const { api, k8s } = await cluster();
    await expect(k8s.killAndReplace('deployment/web', ctx)).rejects.toThrow(
      'kill-and-replace acts on pods: "deployment/web" is not pod/NAME, NAMESPACE/pod/NAME or a pod name',
    );
    await expect(k8s.killAndReplace('{{ host.name }}', ctx)).rejects.toThrow(
      'is not a valid Kubernetes object name',
    );
    expect(api.requests).toEqual([]);
  });
});

describe('kubernetes adapter: scale', () => {
  it('PATCHes the scale subresource with a merge patch, clamped to max', async () => {
    const { api, k8s } = await cluster();
    const result = await k8s.scale('deployment/web', { by: 5, max: 6 }, ctx);
    expect(result.detail).toEqual({
      workload: 'deployment/web',
      via: 'scale',
      from: 3,
      to: 6,
      requested: 8,
      changed: true,
    });
    const patch = api.requests.find((r) => r.method === 'PATCH')!;
    expect(patch).toMatchObject({
      path: '/apis/apps/v1/namespaces/default/deployments/web/scale',
      contentType: 'application/merge-patch+json',
      body: { spec: { replicas: 6 } },
    });
    expect(api.podNames('web-')).toHaveLength(6);
    expect(await k8s.describe('deployment/web')).toMatchObject({ size: 6, desired: 6 });
  });

  it('to and by are clamped to min; a StatefulSet scales the same way', async () => {
    const { api, k8s } = await cluster();
    expect((await k8s.scale('statefulset/db', { to: 0, min: 1 }, ctx)).detail).toMatchObject({
      workload: 'statefulset/db',
      from: 2,
      to: 1,
    });
    expect(api.podNames('db-')).toEqual(['db-0']);
    expect((await k8s.scale('web', { by: -5, min: 2 }, ctx)).detail).toMatchObject({ to: 2 });
    expect((await k8s.scale('web', { by: -5 }, ctx)).detail).toMatchObject({ to: 0 });
  });

  it('no PATCH when the workload is already at the target', async () => {
    const { api, k8s } = await cluster();
    expect((await k8s.scale('web', { to: 5, max: 3 }, ctx)).detail).toMatchObject({
      from: 3,
      to: 3,
      changed: false,
    });
    expect(api.requests.map((r) => r.method)).not.toContain('PATCH');
  });

  it('with an HPA on the workload, raises its minReplicas and leaves the scale subresource alone', async () => {
    const { api, k8s } = await cluster();
    const hpa = api.addHpa('web-hpa', { kind: 'Deployment', name: 'web' }, 2, 10);
    const result = await k8s.scale('web', { by: 2 }, ctx);
    expect(result.detail).toEqual({
      workload: 'deployment/web',
      via: 'hpa',
      hpa: 'web-hpa',
      replicas: 3,
      requested: 5,
      minReplicas: { from: 2, to: 5 },
      maxReplicas: { from: 10, to: 10 },
      configured: { minReplicas: 2, maxReplicas: 10 },
      changed: true,
    });
    const patches = api.requests.filter((r) => r.method === 'PATCH');
    expect(patches).toEqual([
      expect.objectContaining({
        path: '/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web-hpa',
        contentType: 'application/merge-patch+json',
        body: {
          metadata: { annotations: { 'drover.dev/original-min-replicas': '2' } },
          spec: { minReplicas: 5 },
        },
      }),
    ]);
    expect(hpa.spec).toMatchObject({ minReplicas: 5, maxReplicas: 10 });
    expect(api.deployments[0]!.spec.replicas).toBe(3);
  });

  it('raises the HPA maxReplicas too when the new floor passes it, within the rule max', async () => {
    const { api, k8s } = await cluster();
    const hpa = api.addHpa('web-hpa', { kind: 'Deployment', name: 'web' }, 2, 5);
    expect((await k8s.scale('web', { by: 10, max: 8 }, ctx)).detail).toMatchObject({
      minReplicas: { from: 2, to: 8 },
      maxReplicas: { from: 5, to: 8 },
    });
    expect(hpa.spec).toMatchObject({ minReplicas: 8, maxReplicas: 8 });
    expect(hpa.metadata.annotations).toEqual({
      'drover.dev/original-min-replicas': '2',
      'drover.dev/original-max-replicas': '5',
    });
    // A second raise keeps the operator's bounds, not Drover's.
    await k8s.scale('web', { to: 9 }, ctx);
    expect(hpa.spec).toMatchObject({ minReplicas: 9, maxReplicas: 9 });
    expect(hpa.metadata.annotations).toEqual({
      'drover.dev/original-min-replicas': '2',
      'drover.dev/original-max-replicas': '5',
    });
  });

  it('a scale-down returns the HPA to the bounds the operator configured, never below them', async () => {
    const { api, k8s } = await cluster();
    const hpa = api.addHpa('web-hpa', { kind: 'Deployment', name: 'web' }, 2, 5);
    await k8s.scale('web', { to: 7 }, ctx);
    expect((await k8s.scale('web', { by: -2 }, ctx)).detail).toMatchObject({
      minReplicas: { from: 7, to: 2 },
      maxReplicas: { from: 7, to: 5 },
    });
    expect(hpa.spec).toMatchObject({ minReplicas: 2, maxReplicas: 5 });
    expect(hpa.metadata.annotations).toEqual({});
    expect(api.requests.at(-1)!.body).toEqual({
      metadata: {
        annotations: {
          'drover.dev/original-min-replicas': null,
          'drover.dev/original-max-replicas': null,
        },
      },
      spec: { minReplicas: 2, maxReplicas: 5 },
    });
    // Already at the operator's floor: nothing to patch.
    expect((await k8s.scale('web', { to: 0 }, ctx)).detail).toMatchObject({ changed: false });
    expect(api.requests.at(-1)!.method).toBe('GET');
  });

  it('an HPA on another workload is not touched', async () => {
    const { api, k8s } = await cluster();
    api.addHpa('db-hpa', { kind: 'Deployment', name: 'db' }, 1, 4);
    expect((await k8s.scale('web', { by: 1 }, ctx)).detail).toMatchObject({ via: 'scale', to: 4 });
  });

  it('rejects scale parameters that make no sense, before any request', async () => {
    const { api, k8s } = await cluster();
    await expect(k8s.scale('web', {}, ctx)).rejects.toThrow(/needs params.to .* or params.by/);
    await expect(k8s.scale('web', { by: 1.5 }, ctx)).rejects.toThrow(
      'params.by must be a whole number',
    );
    await expect(k8s.scale('web', { to: 3, min: 5, max: 2 }, ctx)).rejects.toThrow(
      'params.min (5) is above params.max (2)',
    );
    await expect(k8s.scale('daemonset/agent', { to: 1 }, ctx)).rejects.toThrow(
      'is not deployment/NAME or statefulset/NAME',
    );
    expect(api.requests).toEqual([]);
  });
});

describe('kubernetes adapter: describe', () => {
  it('counts a workload’s pods and their Ready conditions through its selector', async () => {
    const { api, k8s } = await cluster();
    const [a, b, c] = api.podNames('web-');
    api.setReady(b!, false);
    api.pod(c!)!.metadata.deletionTimestamp = new Date().toISOString();
    const health = await k8s.describe('deployment/web');
    expect(health).toEqual({
      group: 'deployment/web',
      size: 3,
      healthy: 1,
      desired: 3,
      members: [
        { id: a, healthy: true },
        { id: b, healthy: false },
        { id: c, healthy: false },
      ],
    });
    expect(api.requests.at(-1)).toMatchObject({
      path: '/api/v1/namespaces/default/pods',
      query: { labelSelector: 'app=web' },
    });
  });

  it('finds a pod’s group through its owners: ReplicaSet → Deployment, or StatefulSet', async () => {
    const { api, k8s } = await cluster();
    const pod = api.podNames('web-')[0]!;
    expect(await k8s.describe(pod)).toMatchObject({ group: 'deployment/web', size: 3, healthy: 3 });
    expect(calls(api).slice(0, 3)).toEqual([
      `GET /api/v1/namespaces/default/pods/${pod}`,
      'GET /apis/apps/v1/namespaces/default/replicasets/web-7d9f8b6c5d',
      'GET /apis/apps/v1/namespaces/default/deployments/web',
    ]);
    // Members are named as the target names its pod, so the caller finds it among them.
    expect(await k8s.describe('pod/db-0')).toMatchObject({
      group: 'statefulset/db',
      size: 2,
      members: [
        { id: 'pod/db-0', healthy: true },
        { id: 'pod/db-1', healthy: true },
      ],
    });
    // A bare name that is no pod is a Deployment.
    expect(await k8s.describe('web')).toMatchObject({ group: 'deployment/web' });
  });

  it('a selector with matchExpressions is sent as set-based requirements', async () => {
    const { api, k8s } = await cluster();
    api.addDeployment('api', 2, {
      labels: { app: 'api', tier: 'backend' },
      selector: {
        matchLabels: { app: 'api' },
        matchExpressions: [{ key: 'tier', operator: 'In', values: ['backend', 'edge'] }],
      },
    });
    expect(await k8s.describe('deployment/api')).toMatchObject({ size: 2, healthy: 2 });
    expect(api.requests.at(-1)!.query.labelSelector).toBe('app=api,tier in (backend,edge)');
  });

  it('pods without a workload owner are grouped by selectorLabel, or refused without it', async () => {
    const { api, k8s } = await cluster({ selectorLabel: 'app' });
    api.addBarePod('batch-1', { app: 'batch' });
    api.addBarePod('batch-2', { app: 'batch' }, false);
    expect(await k8s.describe('batch-1')).toMatchObject({
      group: 'app=batch',
      size: 2,
      healthy: 1,
    });
    const strict = new KubernetesAdapter('k8s', { kubeconfig: kubeconfig(api.url) });
    await expect(strict.describe('batch-1')).rejects.toThrow(
      'pod batch-1 is owned by no Deployment or StatefulSet; set selectorLabel to group such pods by a label',
    );
  });
});

describe('kubernetes adapter: API errors and configuration', () => {
  it('a 403 from RBAC is a failure carrying the API message', async () => {
    const { api, k8s } = await cluster({ evictionFallback: 'delete' });
    api.denied.push({ verb: 'create', resource: 'pods/eviction' });
    const victim = api.podNames('web-')[0]!;
    const err = await k8s.killAndReplace(victim, ctx).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(AdapterDeclined);
    expect((err as Error).message).toBe(
      `Kubernetes API POST /api/v1/namespaces/default/pods/${victim}/eviction: 403 Forbidden: pods "${victim}" is forbidden: User "system:serviceaccount:drover:drover" cannot create resource "pods/eviction" in API group "" in the namespace "default"`,
    );
    expect(api.requests.map((r) => r.method)).toEqual(['GET', 'POST']);
  });

  it('a 500 is a failure carrying the API message', async () => {
    const { api, k8s } = await cluster();
    api.faults.push({
      method: 'PATCH',
      path: /\/scale$/,
      code: 500,
      reason: 'InternalError',
      message: 'Internal error occurred: etcdserver: request timed out',
    });
    await expect(k8s.scale('web', { by: 1 }, ctx)).rejects.toThrow(
      '500 InternalError: Internal error occurred: etcdserver: request timed out',
    );
    expect(api.deployments[0]!.spec.replicas).toBe(3);
  });

  it('two budgets over one pod: the API refuses with 500, a failure and not a suppression', async () => {
    const { api, k8s } = await cluster();
    api.addPdb('a', { matchLabels: { app: 'web' } }, { minAvailable: 1 });
    api.addPdb('b', { matchLabels: { app: 'web' } }, { maxUnavailable: 1 });
    const err = await k8s.killAndReplace(api.podNames('web-')[0]!, ctx).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(AdapterDeclined);
    expect((err as Error).message).toMatch(
      /500 InternalError: This pod has more than one PodDisruptionBudget/,
    );
  });

  it('a wrong token is a 401 failure; unknown workloads are 404s', async () => {
    const { api, k8s } = await cluster();
    const intruder = new KubernetesAdapter('k8s', { kubeconfig: kubeconfig(api.url, 'stolen') });
    await expect(intruder.describe('deployment/web')).rejects.toThrow(
      '401 Unauthorized: Unauthorized',
    );
    await expect(k8s.scale('deployment/nope', { by: 1 }, ctx)).rejects.toThrow(
      '404 NotFound: deployments.apps "nope" not found',
    );
  });

  it('an unreachable API server is a failure naming the request', async () => {
    const { api } = await cluster();
    await api.close();
    const k8s = new KubernetesAdapter('k8s', { kubeconfig: kubeconfig(api.url) });
    await expect(k8s.describe('deployment/web')).rejects.toThrow(
      /Kubernetes API GET \/apis\/apps\/v1\/namespaces\/default\/deployments\/web: .*ECONNREFUSED/,
    );
  });

  it('context picks the namespace; namespace overrides it; server + token work without a kubeconfig', async () => {
    const api = await startKubeApi({ token: TOKEN });
    running.push(api);
    api.addDeployment('web', 2, { namespace: 'staging' });
    const file = kubeconfig(api.url);
    const staging = new KubernetesAdapter('k8s', { kubeconfig: file, context: 'staging' });
    expect(staging.namespace).toBe('staging');
    expect(await staging.describe('deployment/web')).toMatchObject({ size: 2 });
    const explicit = new KubernetesAdapter('k8s', { kubeconfig: file, namespace: 'staging' });
    await explicit.scale('web', { to: 4 }, ctx);
    expect(api.podNames('web-')).toHaveLength(4);
    const direct = kubernetesFactory.create('k8s', {
      server: api.url,
      token: TOKEN,
      namespace: 'staging',
    }) as KubernetesAdapter;
    expect(await direct.describe('web')).toMatchObject({ size: 4, desired: 4 });
  });

  it('NAMESPACE/KIND/NAME targets act in that namespace, whatever the adapter’s own', async () => {
    const { api, k8s } = await cluster({ namespaces: ['default', 'staging'] });
    api.addDeployment('web', 2, { namespace: 'staging' });
    const victim = api.pods.find((p) => p.metadata.namespace === 'staging')!.metadata.name;
    expect((await k8s.killAndReplace(`staging/pod/${victim}`, ctx)).detail).toMatchObject({
      pod: victim,
      namespace: 'staging',
      via: 'eviction',
    });
    expect(api.requests.at(-1)!.path).toBe(`/api/v1/namespaces/staging/pods/${victim}/eviction`);
    expect((await k8s.scale('staging/deployment/web', { by: 1 }, ctx)).detail).toMatchObject({
      workload: 'staging/deployment/web',
      from: 2,
      to: 3,
    });
    const inStaging = api.pods.filter((p) => p.metadata.namespace === 'staging');
    expect(inStaging).toHaveLength(3);
    const health = await k8s.describe(`staging/pod/${inStaging[0]!.metadata.name}`);
    expect(health).toMatchObject({ group: 'staging/deployment/web', size: 3, desired: 3 });
    expect(health.members!.map((m) => m.id)).toEqual(
      inStaging.map((p) => `staging/pod/${p.metadata.name}`),
    );
    // The default namespace's web is untouched.
    expect(await k8s.describe('deployment/web')).toMatchObject({
      group: 'deployment/web',
      size: 3,
    });
    await expect(k8s.scale('a/b/deployment/web', { by: 1 }, ctx)).rejects.toThrow(
      'is not NAME, KIND/NAME or NAMESPACE/KIND/NAME',
    );
  });

  it('the factory is the default export and refuses bad options with a clear error', () => {
    expect(kubernetesFactory.type).toBe('kubernetes');
    expect(() =>
      kubernetesFactory.create('k8s', { server: 'http://127.0.0.1:1', evictionFalback: 'delete' }),
    ).toThrow('kubernetes adapter "k8s": unknown option "evictionFalback"');
    expect(() =>
      kubernetesFactory.create('k8s', { server: 'http://127.0.0.1:1', evictionFallback: 'force' }),
    ).toThrow('evictionFallback must be "delete" or "none"');
    expect(() =>
      kubernetesFactory.create('k8s', { server: 'http://127.0.0.1:1', gracePeriodSeconds: -1 }),
    ).toThrow('gracePeriodSeconds must be a whole number');
    expect(() =>
      kubernetesFactory.create('k8s', {
        kubeconfig: kubeconfig('http://127.0.0.1:1'),
        context: 'prod',
      }),
    ).toThrow('no context "prod" in the kubeconfig (has: local, staging)');
    expect(() =>
      kubernetesFactory.create('k8s', {
        kubeconfig: kubeconfig('http://127.0.0.1:1', TOKEN, false),
      }),
    ).toThrow(
      'cluster "local" is plain HTTP (http://127.0.0.1:1); set insecure-skip-tls-verify: true',
    );
    expect(() =>
      kubernetesFactory.create('k8s', { server: 'http://10.0.0.1:8080', token: TOKEN }),
    ).toThrow('plain HTTP is only allowed to a loopback address');
  });
});

describe('kubernetes adapter over TLS', () => {
  const b64 = (pem: string) => Buffer.from(pem).toString('base64');
  /** A kubeconfig as a cloud provider hands out: the cluster CA inline, a token or a client certificate. */
  function tlsKubeconfig(url: string, user: 'token' | 'certificate', ca = TEST_TLS.ca): string {
    const file = join(mkdtempSync(join(tmpdir(), 'drover-kube-')), 'config');
    const credentials =
      user === 'token'
        ? `{ token: ${TOKEN} }`
        : `{ client-certificate-data: ${b64(TEST_TLS.clientCert)}, client-key-data: ${b64(TEST_TLS.clientKey)} }`;
    writeFileSync(
      file,
      `apiVersion: v1
kind: Config
clusters: [{ name: prod, cluster: { server: "${url}", certificate-authority-data: ${b64(ca)} } }]
users: [{ name: drover, user: ${credentials} }]
contexts: [{ name: prod, context: { cluster: prod, user: drover, namespace: default } }]
current-context: prod
`,
    );
    return file;
  }

  async function tlsCluster() {
    const api = await startKubeApi({ token: TOKEN, tls: true });
    running.push(api);
    api.addDeployment('web', 3);
    return api;
  }

  it('verifies the API server against the kubeconfig CA and sends the token', async () => {
    const api = await tlsCluster();
    expect(api.url).toMatch(/^https:/);
    const k8s = new KubernetesAdapter('k8s', { kubeconfig: tlsKubeconfig(api.url, 'token') });
    await k8s.killAndReplace(api.podNames('web-')[0]!, ctx);
    expect(api.requests.map((r) => r.user)).toEqual(['token', 'token']);
  });

  it('authenticates with a client certificate from the kubeconfig', async () => {
    const api = await tlsCluster();
    const k8s = new KubernetesAdapter('k8s', { kubeconfig: tlsKubeconfig(api.url, 'certificate') });
    expect(await k8s.describe('deployment/web')).toMatchObject({ size: 3, healthy: 3 });
    expect(api.requests[0]).toMatchObject({ user: 'drover' });
    expect(api.requests[0]!.authorization).toBeUndefined();
  });

  it('refuses an API server whose certificate the configured CA did not sign', async () => {
    const api = await tlsCluster();
    const k8s = new KubernetesAdapter('k8s', {
      kubeconfig: tlsKubeconfig(api.url, 'token', TEST_TLS.otherCa),
    });
    await expect(k8s.describe('deployment/web')).rejects.toThrow(
      /Kubernetes API GET \/apis\/apps\/v1\/namespaces\/default\/deployments\/web: .*(certificate|self[- ]signed)/i,
    );
    expect(api.requests).toEqual([]);
  });
});

/** The test server must hold the adapter to the API's rules, or the tests above prove little. */
describe('the local Kubernetes API server', () => {
  it('answers a PATCH in plain JSON with 415 and a Status, and unknown paths with 404', async () => {
    const api = await startKubeApi({ token: TOKEN });
    running.push(api);
    api.addDeployment('web', 3);
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const patch = await fetch(`${api.url}/apis/apps/v1/namespaces/default/deployments/web/scale`, {
      method: 'PATCH',
      headers,
      body: JSON.stringify({ spec: { replicas: 9 } }),
    });
    expect(patch.status).toBe(415);
    expect(await patch.json()).toMatchObject({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'UnsupportedMediaType',
      code: 415,
    });
    expect(api.deployments[0]!.spec.replicas).toBe(3);
    const unknown = await fetch(`${api.url}/apis/apps/v1/namespaces/default/daemonsets/agent`, {
      headers,
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404 });
  });

  it('refuses an HPA patch that would put minReplicas above maxReplicas (422)', async () => {
    const api = await startKubeApi();
    running.push(api);
    api.addHpa('web', { kind: 'Deployment', name: 'web' }, 2, 5);
    const res = await fetch(
      `${api.url}/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web`,
      {
        method: 'PATCH',
        headers: { 'content-type': 'application/merge-patch+json' },
        body: JSON.stringify({ spec: { minReplicas: 8 } }),
      },
    );
    expect(res.status).toBe(422);
    expect(((await res.json()) as { message: string }).message).toContain(
      'spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`',
    );
  });
});
