import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  type Adapter,
  createRemediator,
  ElasticsearchStore,
  type ElasticsearchStoreOptions,
  ExecAdapter,
} from '../../../actions/index.ts';
import type { Alert } from '../../../rules/index.ts';
import { attempt, budgetOfOne, decision, query, storeContract, T } from './store-contract.ts';

const url = inject('elasticsearchUrl');
const reason = inject('serverSkipReasons').elasticsearch;
describe.skipIf(!url)(
  `Elasticsearch remediation store against a real server${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    // One prefix per file, one sub-prefix per test: runs and tests never share state.
    const prefix = `t${randomUUID().slice(0, 8)}`;
    let n = 0;
    const fresh = () => `${prefix}-${++n}`;
    const opened: ElasticsearchStore[] = [];
    let es: Client;

    /** A worker's store: its own client, as a separate process would have. */
    async function open(p: string, options: Partial<ElasticsearchStoreOptions> = {}) {
      const store = await new ElasticsearchStore({ node: url!, prefix: p, ...options }).init();
      opened.push(store);
      return store;
    }

    beforeAll(() => {
      es = new Client({ node: url! });
    });
    afterAll(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
      await es?.indices.delete({ index: `${prefix}-*` }).catch(() => {});
      await es?.indices.deleteIndexTemplate({ name: `${prefix}-*` }).catch(() => {});
      await es?.close();
    });

    storeContract({
      fresh,
      open: (name) => open(name),
      // The ledger is read by search: refresh so the last writes are seen.
      settle: async (store) => {
        await es.indices.refresh({ index: (store as ElasticsearchStore).stateIndex });
      },
    });

    it('detects a server without data streams: the journal goes to daily indices with the ECS mapping', async () => {
      const p = fresh();
      const store = await open(p);
      const { index_templates } = await es.indices.getIndexTemplate({ name: `${p}-actions` });
      expect(index_templates[0]!.index_template.index_patterns).toEqual([`${p}-actions-*`]);
      expect(index_templates[0]!.index_template.data_stream).toBeUndefined();
      await store.record(decision());
      const index = `${p}-actions-2024.01.01`;
      const mapping = await es.indices.getMapping({ index });
      const props = mapping[index]!.mappings.properties as Record<string, { type?: string }>;
      expect(props.rule!.type).toBe('keyword');
      expect(props.decision!.type).toBe('keyword');
      expect(props['@timestamp']!.type).toBe('date');
      expect(props.at!.type).toBe('long');
      expect(await es.indices.exists({ index: `${p}-remediation-state` })).toBe(true);
      // init() is idempotent: a second worker (or a restart) installs the same again.
      await open(p);
    });

    it('refuses to start without a server, rather than guessing its features', async () => {
      const store = new ElasticsearchStore({ node: 'http://127.0.0.1:9', prefix: fresh() });
      await expect(store.init()).rejects.toThrow();
      await store.close();
      expect(() => new ElasticsearchStore({})).toThrow(/node URL or a client/);
    });

    it('reports claims that never got a journal entry (a crash mid-action), page by page', async () => {
      const p = fresh();
      const store = await open(p, { pageSize: 3 });
      for (let i = 0; i < 10; i++) await store.claim(`a${i}#0`, i);
      for (const i of [0, 2, 3, 4, 5, 9]) await store.record(decision({ id: `a${i}#0`, at: i }));
      expect(await store.interruptedClaims()).toEqual([
        { id: 'a1#0', at: 1 },
        { id: 'a6#0', at: 6 },
        { id: 'a7#0', at: 7 },
        { id: 'a8#0', at: 8 },
      ]);
      // Retention deleting old journal indices does not turn journaled claims into
      // interrupted ones.
      await es.indices.delete({ index: `${p}-actions-*` });
      expect((await store.interruptedClaims()).map((c) => c.id)).toEqual([
        'a1#0',
        'a6#0',
        'a7#0',
        'a8#0',
      ]);
    });

    it('reserve: a lease left by a worker that died is taken over once it expires', async () => {
      const p = fresh();
      const store = await open(p, { lockLeaseMs: 1_000 });
      // What a worker killed between taking the lease and releasing it leaves behind.
      await es.index({
        index: `${p}-remediation-state`,
        id: 'lock:reserve',
        document: { kind: 'lock', owner: 'dead', until: Date.now() + 1_000 },
      });
      const began = Date.now();
      expect(await store.reserve(attempt(), query(), budgetOfOne)).toBeUndefined();
      expect(Date.now() - began).toBeGreaterThanOrEqual(900);
      expect((await store.ledger(query())).rule).toEqual([1]);
      // ...and a live lease held too long fails the reservation instead of acting.
      await es.index({
        index: `${p}-remediation-state`,
        id: 'lock:reserve',
        document: { kind: 'lock', owner: 'busy', until: Date.now() + 60_000 },
      });
      const impatient = await open(p, { lockWaitMs: 300 });
      await expect(
        impatient.reserve(attempt({ id: 'a2#0' }), query(), () => undefined),
      ).rejects.toThrow(/reservation lock .* held by another worker/);
      expect((await store.ledger(query())).rule).toEqual([1]);
    });

    describe('the remediator on the Elasticsearch store, acting through the exec adapter', () => {
      const dir = mkdtempSync(join(tmpdir(), 'drover-es-remediate-'));
      let seq = 0;
      const alert = (host = 'web-1'): Alert => ({
        id: `alert-${++seq}`,
        rule: 'web-replica-silent',
        type: 'expiry',
        key: { 'host.name': host },
        at: '2024-01-01T00:00:00.000Z',
        figures: { count: 3 },
        labels: {},
        actions: [{ adapter: 'fleet', operation: 'kill-and-replace', target: '{{ host.name }}' }],
      });

      /** A worker: its own store on the shared prefix, an exec adapter that logs what it ran. */
      async function worker(p: string, log: string, now: () => number) {
        const store = await open(p);
        // A real command: appends "<idempotency key> <target>" to the log.
        const fleet = new ExecAdapter('fleet', {
          command: 'sh',
          args: ['-c', 'echo "$DROVER_IDEMPOTENCY_KEY $DROVER_TARGET" >> "$0"', log],
        });
        const remediator = createRemediator({
          store,
          adapters: new Map<string, Adapter>([['fleet', fleet]]),
          guards: { cooldownMs: 60_000 },
          clock: now,
        });
        return { store, remediator };
      }
      const acted = (log: string) =>
        existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];

      it('a replayed alert, or the same alert at two workers at once, acts once', async () => {
        const p = fresh();
        const log = join(dir, `${p}.log`);
        const now = () => T;
        const one = await worker(p, log, now);
        const two = await worker(p, log, now);
        const a = alert();
        const [first, second] = await Promise.all([
          one.remediator.handle(a),
          two.remediator.handle(a),
        ]);
        expect([first[0]!.decision, second[0]!.decision].sort()).toEqual([
          'executed',
          'suppressed',
        ]);
        expect((await one.remediator.handle(a))[0]).toMatchObject({
          decision: 'suppressed',
          guard: 'idempotency',
        });
        expect(acted(log)).toEqual([`${a.id}#0 web-1`]);
        const journal = await one.store.list();
        expect(journal.map((d) => d.decision).sort()).toEqual([
          'executed',
          'suppressed',
          'suppressed',
        ]);
        expect(journal.find((d) => d.decision === 'executed')!.result).toMatchObject({
          command: 'sh',
          exitCode: 0,
        });
        expect(await one.store.interruptedClaims()).toEqual([]);
      });

      it('the cooldown and idempotency hold across a store restart', async () => {
        const p = fresh();
        const log = join(dir, `${p}.log`);
        let clock = T;
        const now = () => clock;
        const before = await worker(p, log, now);
        const a = alert();
        expect((await before.remediator.handle(a))[0]!.decision).toBe('executed');
        await before.store.close();

        clock += 30_000;
        const after = await worker(p, log, now);
        expect((await after.remediator.handle(a))[0]).toMatchObject({ guard: 'idempotency' });
        expect((await after.remediator.handle(alert()))[0]).toMatchObject({
          decision: 'suppressed',
          guard: 'cooldown',
        });
        expect((await after.remediator.handle(alert('web-2')))[0]!.decision).toBe('executed');
        clock += 31_000; // the cooldown has passed
        const later = alert();
        expect((await after.remediator.handle(later))[0]!.decision).toBe('executed');
        expect(acted(log)).toEqual([
          `${a.id}#0 web-1`,
          `alert-${seq - 1}#0 web-2`,
          `${later.id}#0 web-1`,
        ]);
      });
    });
  },
);
