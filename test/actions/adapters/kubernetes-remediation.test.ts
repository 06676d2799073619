import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ActionStore,
  createAdapters,
  type GuardConfig,
  openActionStore,
  Remediator,
} from '../../../actions/index.ts';
import type { Alert } from '../../../rules/index.ts';
import { type FakeKubeApi, startKubeApi } from '../fixtures/k8s-api-server.ts';

/**
 * The kubernetes adapter as the remediator uses it: loaded by type from configuration,
 * behind the guard rails, every outcome in the journal.
 */
const opened: Array<{ api: FakeKubeApi; store: ActionStore }> = [];
afterEach(async () => {
  for (const { api, store } of opened.splice(0)) {
    store.close();
    await api.close();
  }
});

let seq = 0;
function alert(host: string, actions: Alert['actions']): Alert {
  seq++;
  return {
    id: `alert-${seq}`,
    rule: 'web-new-stack-trace',
    type: 'new_term',
    key: { 'service.name': 'web', 'host.name': host },
    at: '2024-01-01T00:00:00.000Z',
    figures: {},
    sample: { 'service.name': 'web', 'host.name': host },
    labels: {},
    actions,
  };
}
const replace = [
  { adapter: 'cluster', operation: 'kill-and-replace' as const, target: '{{ host.name }}' },
];

async function setup(guards: GuardConfig = {}) {
  const api = await startKubeApi();
  api.addDeployment('web', 4);
  const dir = mkdtempSync(join(tmpdir(), 'drover-k8s-remediation-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters: [{ name: local, cluster: { server: "${api.url}", insecure-skip-tls-verify: true } }]
users: [{ name: drover, user: {} }]
contexts: [{ name: local, context: { cluster: local, user: drover } }]
current-context: local
`,
  );
  const store = openActionStore(join(dir, 'actions.db'));
  opened.push({ api, store });
  const adapters = await createAdapters({ cluster: { type: 'kubernetes', kubeconfig } });
  const remediator = new Remediator({ store, adapters, guards: { cooldownMs: 0, ...guards } });
  return { api, store, remediator };
}

describe('kubernetes adapter behind the remediator', () => {
  it('an executed eviction is journalled with what the adapter did', async () => {
    const { api, store, remediator } = await setup({ minHealthy: 3 });
    const pod = api.podNames('web-')[0]!;
    const [decision] = await remediator.handle(alert(pod, replace));
    expect(decision).toMatchObject({
      decision: 'executed',
      adapter: 'cluster',
      target: pod,
      result: { pod, namespace: 'default', via: 'eviction' },
    });
    expect(store.list()).toHaveLength(1);
    expect(api.podNames('web-')).not.toContain(pod);
  });

  it('a PodDisruptionBudget refusal is journalled as a suppression by the adapter', async () => {
    const { api, remediator } = await setup();
    api.addPdb('web-pdb', { matchLabels: { app: 'web' } }, { minAvailable: '100%' });
    const pod = api.podNames('web-')[0]!;
    const [decision] = await remediator.handle(alert(pod, replace));
    expect(decision).toMatchObject({ decision: 'suppressed', guard: 'adapter' });
    expect(decision!.reason).toMatch(/^pod-disruption-budget: Cannot evict pod/);
    expect(api.podNames('web-')).toContain(pod);
  });

  it('the min-healthy floor reads the pods’ Ready conditions; an unready pod may still be replaced', async () => {
    const { api, remediator } = await setup({ minHealthy: 3 });
    const [a, b] = api.podNames('web-');
    api.setReady(a!, false);
    // 3 of 4 Ready: taking a Ready pod would leave 2.
    const [refused] = await remediator.handle(alert(b!, replace));
    expect(refused).toMatchObject({ decision: 'suppressed', guard: 'min-healthy' });
    expect(api.requests.map((r) => r.method)).not.toContain('POST');
    // The sick pod itself takes no health away.
    const [done] = await remediator.handle(alert(a!, replace));
    expect(done).toMatchObject({ decision: 'executed', result: { pod: a, via: 'eviction' } });
  });

  it('an API failure is journalled as failed with the API message; a scale under an HPA moves its floor', async () => {
    const { api, remediator } = await setup();
    api.denied.push({ verb: 'create', resource: 'pods/eviction' });
    const pod = api.podNames('web-')[0]!;
    const [failed] = await remediator.handle(alert(pod, replace));
    expect(failed).toMatchObject({ decision: 'failed' });
    expect(failed!.error).toContain('403 Forbidden');
    api.addHpa('web', { kind: 'Deployment', name: 'web' }, 2, 6);
    const [scaled] = await remediator.handle(
      alert(pod, [
        {
          adapter: 'cluster',
          operation: 'scale',
          target: 'deployment/{{ service.name }}',
          params: { by: 2, max: 8 },
        },
      ]),
    );
    expect(scaled).toMatchObject({
      decision: 'executed',
      target: 'deployment/web',
      result: { via: 'hpa', minReplicas: { from: 2, to: 6 } },
    });
  });
});
