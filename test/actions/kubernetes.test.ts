import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AdapterDeclined } from '../../actions/index.ts';
import { KubernetesAdapter } from '../../actions/adapters/kubernetes.ts';
import { type FakeCluster, startK8sApi } from './fixtures/k8s-api-server.ts';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function cluster(overrides: Partial<FakeCluster> = {}): FakeCluster {
  return {
    pods: [
      { name: 'web-a', app: 'web', ready: true },
      { name: 'web-b', app: 'web', ready: true },
      { name: 'web-c', app: 'web', ready: true },
    ],
    deployments: { web: { replicas: 3 }, api: { replicas: 2 } },
    statefulsets: { db: { replicas: 1 } },
    hpas: [],
    pdbs: {},
    requests: [],
    ...overrides,
  };
}

/** The adapter reads a real kubeconfig file pointing at the local API server. */
async function adapter(c: FakeCluster, options: Record<string, unknown> = {}) {
  const { url, server } = await startK8sApi(c);
  servers.push(server);
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'drover-kube-')), 'config');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters: [{ name: local, cluster: { server: "${url}", insecure-skip-tls-verify: true } }]
users: [{ name: drover, user: { token: t0ken } }]
contexts: [{ name: local, context: { cluster: local, user: drover, namespace: default } }]
current-context: local
`,
  );
  return new KubernetesAdapter('k8s', { kubeconfig, ...options });
}

describe('kubernetes adapter against a local API server', () => {
  it('kill-and-replace posts a policy/v1 Eviction with the kubeconfig credentials', async () => {
    const c = cluster();
    const k8s = await adapter(c);
    const result = await k8s.killAndReplace('web-a');
    expect(result.detail).toEqual({ pod: 'web-a', namespace: 'default', via: 'eviction' });
    expect(c.requests[0]).toMatchObject({
      method: 'POST',
      path: '/api/v1/namespaces/default/pods/web-a/eviction',
      contentType: 'application/json',
      body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'web-a' } },
    });
    expect(c.requests[0]!.authorization).toBe('Bearer t0ken');
    expect(c.pods.map((p) => p.name)).not.toContain('web-a');
  });

  it('a PodDisruptionBudget 429 is a suppression (AdapterDeclined), not a failure, and nothing is deleted', async () => {
    const c = cluster({ pdbs: { web: 3 } });
    const k8s = await adapter(c, { evictionFallback: 'delete' });
    const err = await k8s.killAndReplace('pod/web-b').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterDeclined);
    expect((err as AdapterDeclined).reason).toBe('pod-disruption-budget');
    expect(c.pods).toHaveLength(3);
    expect(c.requests.map((r) => r.method)).toEqual(['POST']);
  });

  it('falls back to DELETE only where the eviction subresource is missing, and only when configured', async () => {
    const c = cluster({ evictionUnsupported: true });
    const strict = await adapter(c);
    await expect(strict.killAndReplace('web-a')).rejects.toThrow(/no eviction subresource/);
    const lenient = await adapter(c, { evictionFallback: 'delete', gracePeriodSeconds: 10 });
    expect((await lenient.killAndReplace('web-a')).detail).toMatchObject({ via: 'delete' });
    expect(c.requests.at(-1)).toMatchObject({
      method: 'DELETE',
      path: '/api/v1/namespaces/default/pods/web-a?gracePeriodSeconds=10',
    });
    await expect(lenient.killAndReplace('no-such-pod')).rejects.toThrow(
      /pods "no-such-pod" not found/,
    );
  });

  it('scales through the scale subresource with a merge patch, within min and max', async () => {
    const c = cluster();
    const k8s = await adapter(c);
    expect((await k8s.scale('deployment/web', { by: 5, max: 6 })).detail).toEqual({
      workload: 'deployments/web',
      via: 'scale',
      from: 3,
      to: 6,
      requested: 8,
    });
    expect(c.deployments.web!.replicas).toBe(6);
    const patch = c.requests.find((r) => r.method === 'PATCH')!;
    expect(patch).toMatchObject({
      path: '/apis/apps/v1/namespaces/default/deployments/web/scale',
      contentType: 'application/merge-patch+json',
      body: { spec: { replicas: 6 } },
    });
    await k8s.scale('statefulset/db', { to: 0, min: 1 });
    expect(c.statefulsets.db!.replicas).toBe(1);
  });

  it('raises an HPA floor instead of fighting the autoscaler, leaving the scale subresource alone', async () => {
    const c = cluster({
      hpas: [
        {
          name: 'web-hpa',
          target: { kind: 'Deployment', name: 'web' },
          minReplicas: 2,
          maxReplicas: 5,
        },
      ],
    });
    const k8s = await adapter(c);
    const result = await k8s.scale('web', { by: 4 });
    expect(result.detail).toMatchObject({
      via: 'hpa',
      hpa: 'web-hpa',
      minReplicas: { from: 2, to: 7 },
    });
    expect(c.hpas[0]).toMatchObject({ minReplicas: 7, maxReplicas: 7 });
    expect(c.requests.filter((r) => r.method === 'PATCH').map((r) => r.path)).toEqual([
      '/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web-hpa',
    ]);
    expect(c.deployments.web!.replicas).toBe(3);
  });

  it('describes a workload from its pods Ready conditions, also when given a pod', async () => {
    const c = cluster();
    c.pods[1]!.ready = false;
    const k8s = await adapter(c);
    expect(await k8s.describe('deployment/web')).toMatchObject({
      group: 'deployments/web',
      size: 3,
      healthy: 2,
      desired: 3,
    });
    expect(await k8s.describe('web-a')).toMatchObject({ group: 'deployments/web', healthy: 2 });
  });

  it('API errors surface with the API message', async () => {
    const k8s = await adapter(cluster({ forbidden: true }));
    await expect(k8s.scale('web', { by: 1 })).rejects.toThrow(/403 Forbidden: .*cannot GET/);
    await expect((await adapter(cluster())).scale('deployment/nope', { by: 1 })).rejects.toThrow(
      /404 NotFound: deployments.apps "nope" not found/,
    );
  });
});
