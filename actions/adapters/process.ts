import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import type {
  ActionResult,
  Adapter,
  AdapterFactory,
  GroupHealth,
  Notification,
  ScaleParams,
} from './types.ts';

/**
 * The embedded default: a local supervisor. Each service runs N replicas of a command,
 * each on its own `PORT` (the $PORT pattern) with `DROVER_SERVICE` and
 * `DROVER_REPLICA_ID` in its environment. Replicas that exit are restarted with
 * backoff; kill-and-replace starts a fresh replica on a new port, then stops the old
 * one (SIGTERM, SIGKILL after the grace period), so capacity never dips.
 */
export interface ServiceSpec {
  command: string;
  args?: string[];
  replicas: number;
  min?: number;
  max?: number;
  env?: Record<string, string>;
  cwd?: string;
  /** HTTP path answering 2xx when a replica is healthy; without it, alive = healthy. */
  healthPath?: string;
  graceMs?: number;
}

export interface Replica {
  id: string;
  service: string;
  pid: number | undefined;
  port: number;
  started: number;
  restarts: number;
}

interface Running extends Replica {
  child: ChildProcess;
  stopping: boolean;
}

export class ProcessAdapter extends EventEmitter implements Adapter {
  readonly type = 'process';
  private readonly running = new Map<string, Running>();
  private readonly sequence = new Map<string, number>();
  private readonly recentExits = new Map<string, number[]>();
  private closed = false;

  constructor(
    readonly name: string,
    private readonly services: Record<string, ServiceSpec>,
  ) {
    super();
  }

  async start(): Promise<void> {
    for (const [service, spec] of Object.entries(this.services)) {
      for (let i = 0; i < spec.replicas; i++) await this.startReplica(service);
    }
  }

  replicas(service?: string): Replica[] {
    return [...this.running.values()]
      .filter((r) => !r.stopping && (service === undefined || r.service === service))
      .map(({ id, service: s, pid, port, started, restarts }) => ({
        id,
        service: s,
        pid,
        port,
        started,
        restarts,
      }));
  }

  private spec(service: string): ServiceSpec {
    const spec = this.services[service];
    if (!spec) throw new Error(`no service "${service}" in the process adapter ${this.name}`);
    return spec;
  }

  private async startReplica(service: string, restarts = 0): Promise<Running> {
    const spec = this.spec(service);
    const n = (this.sequence.get(service) ?? 0) + 1;
    this.sequence.set(service, n);
    const id = `${service}-${n}`;
    const port = await freePort();
    const child = spawn(spec.command, spec.args ?? [], {
      cwd: spec.cwd,
      env: {
        ...process.env,
        ...spec.env,
        PORT: String(port),
        DROVER_SERVICE: service,
        DROVER_REPLICA_ID: id,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const replica: Running = {
      id,
      service,
      pid: child.pid,
      port,
      started: Date.now(),
      restarts,
      child,
      stopping: false,
    };
    this.running.set(id, replica);
    child.once('exit', (code, signal) => this.exited(replica, code, signal));
    this.emit(
      'started',
      this.replicas(service).find((r) => r.id === id),
    );
    return replica;
  }

  private exited(replica: Running, code: number | null, signal: NodeJS.Signals | null): void {
    this.running.delete(replica.id);
    this.emit('exited', {
      id: replica.id,
      service: replica.service,
      code,
      signal,
      expected: replica.stopping,
    });
    if (replica.stopping || this.closed) return;
    // Unexpected: restart, backing off while it keeps crashing.
    const now = Date.now();
    const exits = (this.recentExits.get(replica.service) ?? []).filter((t) => now - t < 60_000);
    exits.push(now);
    this.recentExits.set(replica.service, exits);
    const delay = Math.min(30_000, 250 * 2 ** (exits.length - 1));
    if (exits.length >= 3)
      this.emit('crash-loop', { service: replica.service, exits: exits.length });
    setTimeout(() => {
      if (!this.closed)
        void this.startReplica(replica.service, replica.restarts + 1).catch((err) =>
          this.emit('error', err),
        );
    }, delay).unref();
  }

  private find(target: string): Running | undefined {
    for (const r of this.running.values()) {
      if (
        !r.stopping &&
        (r.id === target || String(r.pid) === target || `127.0.0.1:${r.port}` === target)
      )
        return r;
    }
    return undefined;
  }

  private async stop(replica: Running): Promise<void> {
    if (replica.child.exitCode !== null || replica.child.signalCode !== null) return;
    replica.stopping = true;
    const exited = new Promise((r) => replica.child.once('exit', r));
    replica.child.kill('SIGTERM');
    const timer = setTimeout(
      () => replica.child.kill('SIGKILL'),
      this.spec(replica.service).graceMs ?? 5_000,
    );
    await exited;
    clearTimeout(timer);
  }

  async killAndReplace(target: string): Promise<ActionResult> {
    const old = this.find(target);
    if (!old) throw new Error(`no running replica "${target}" in ${this.name}`);
    const fresh = await this.startReplica(old.service);
    await this.stop(old);
    return {
      detail: {
        service: old.service,
        killed: { id: old.id, pid: old.pid, port: old.port },
        started: { id: fresh.id, pid: fresh.pid, port: fresh.port },
      },
    };
  }

  async scale(target: string, params: ScaleParams): Promise<ActionResult> {
    const service = this.services[target] ? target : this.find(target)?.service;
    if (!service) throw new Error(`no service or replica "${target}" in ${this.name}`);
    const spec = this.spec(service);
    const current = this.replicas(service).length;
    const wanted = params.to ?? current + (params.by ?? 0);
    const min = Math.max(params.min ?? 0, spec.min ?? 0);
    const max = Math.min(
      params.max ?? Number.POSITIVE_INFINITY,
      spec.max ?? Number.POSITIVE_INFINITY,
    );
    const to = Math.max(min, Math.min(max, wanted));
    for (let i = current; i < to; i++) await this.startReplica(service);
    const extra = this.replicas(service).slice(0, Math.max(0, current - to));
    await Promise.all(extra.map((r) => this.stop(this.running.get(r.id)!)));
    return { detail: { service, from: current, to, requested: wanted, clamped: to !== wanted } };
  }

  async notify(_n: Notification): Promise<ActionResult> {
    throw new Error(
      `the process adapter ${this.name} cannot notify: configure a webhook or exec adapter for notify`,
    );
  }

  async describe(target: string): Promise<GroupHealth> {
    const service = this.services[target] ? target : this.find(target)?.service;
    if (!service) throw new Error(`no service or replica "${target}" in ${this.name}`);
    const spec = this.spec(service);
    const members = await Promise.all(
      this.replicas(service).map(async (r) => ({
        id: r.id,
        healthy: spec.healthPath ? await httpOk(r.port, spec.healthPath) : true,
      })),
    );
    return {
      group: service,
      size: members.length,
      healthy: members.filter((m) => m.healthy).length,
      desired: spec.replicas,
      members,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.running.values()].map((r) => this.stop(r)));
  }
}

async function httpOk(port: number, path: string): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(1_000),
    });
    return res.ok;
  } catch {
    return false;
  }
}

/** A free loopback port (the $PORT a replica gets). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const factory: AdapterFactory = {
  type: 'process',
  create: (name, options) =>
    new ProcessAdapter(name, (options.services ?? {}) as Record<string, ServiceSpec>),
};
export default factory;
