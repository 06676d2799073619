/**
 * The embedded default: a local supervisor. Each service runs N replicas of a command,
 * each on its own free loopback `PORT` (the $PORT pattern) with `DROVER_SERVICE` and
 * `DROVER_REPLICA_ID` in its environment. A replica that exits unexpectedly is
 * restarted with exponential backoff; three exits within a minute is a crash loop,
 * reported as an event (and by `crashLooping`). Kill-and-replace starts a fresh replica
 * on a new port, waits until it is ready (see `readiness`), then stops the old one
 * (SIGTERM, SIGKILL after the grace period), so capacity never dips.
 *
 * Events: `started` (a Replica), `exited` ({ id, service, code, signal, expected }),
 * `health` (a Replica whose health changed), `crash-loop` ({ service, exits }),
 * `unready` and `restart-failed` (with the error), and `change` (the service whose
 * replica list or health changed) after any of them. None is named `error`, so an
 * unwatched adapter never throws from an event.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { parseDuration } from '../../rules/index.ts';
import { childEnv, validateInheritEnv } from './child-env.ts';
import { expectTarget, shown } from './target-checks.ts';
import {
  type ActionResult,
  type Adapter,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
  type TargetOperation,
  TargetRefused,
} from './types.ts';

export interface ServiceSpec {
  command: string;
  args?: string[];
  replicas: number;
  min?: number;
  max?: number;
  /** Added to the replica's minimal environment (see child-env.ts). */
  env?: Record<string, string>;
  /** Names of Drover's environment variables the replica also gets (never Drover's own secrets). */
  inheritEnv?: string[];
  cwd?: string;
  /** HTTP path answering 2xx when a replica is healthy; without it, alive = healthy. */
  healthPath?: string;
  /** SIGTERM to SIGKILL: a duration (`5s`) or ms. Default 5 s. */
  gracePeriod?: string | number;
  /** @deprecated the same as gracePeriod, in ms. */
  graceMs?: number;
  /**
   * When a fresh replica counts as ready: `listen` (it accepts connections on $PORT),
   * `health` (it answers healthPath with 2xx) or `none` (it was started; the default,
   * for workers that serve nothing). With `listen` or `health`, kill-and-replace stops
   * the old replica only once the fresh one is ready, and keeps it if the fresh one
   * never is.
   */
  readiness?: 'none' | 'listen' | 'health';
  /** How long a fresh replica has to become ready. Default 10 s. */
  startTimeout?: string | number;
}

export interface Replica {
  id: string;
  service: string;
  pid: number | undefined;
  port: number;
  /** Epoch ms. */
  started: number;
  /** How many times this slot was restarted after unexpected exits. */
  restarts: number;
  /** The last health check's verdict; undefined before the first. */
  healthy: boolean | undefined;
}

export interface ProcessAdapterOptions {
  services: Record<string, ServiceSpec>;
  /** How often replicas' health is checked. Default 2 s; 0 turns the checker off. */
  healthInterval?: string | number;
}

interface Running extends Replica {
  child: ChildProcess;
  stopping: boolean;
  exit: Promise<void>;
}

/**
 * What a process target can be: a service name, a replica id (`SERVICE-N`), a pid, or
 * `127.0.0.1:PORT` / `localhost:PORT`.
 */
const PROCESS_TARGET = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}$/;

const CRASH_WINDOW_MS = 60_000;
const CRASH_LOOP_EXITS = 3;

export class ProcessAdapter extends EventEmitter implements Adapter {
  readonly type = 'process';
  private readonly services: Record<string, ServiceSpec>;
  private readonly running = new Map<string, Running>();
  private readonly sequence = new Map<string, number>();
  private readonly recentExits = new Map<string, number[]>();
  private readonly pendingRestarts = new Set<NodeJS.Timeout>();
  private healthTimer: NodeJS.Timeout | undefined;
  private readonly healthIntervalMs: number;
  private closed = false;

  constructor(
    readonly name: string,
    options: ProcessAdapterOptions | Record<string, ServiceSpec>,
  ) {
    super();
    const opts = (
      'services' in options &&
      typeof options.services === 'object' &&
      !('command' in options.services)
        ? options
        : { services: options }
    ) as ProcessAdapterOptions;
    this.services = opts.services;
    this.healthIntervalMs = ms(opts.healthInterval, 2_000, `${name}.healthInterval`);
    for (const [service, spec] of Object.entries(this.services)) validateSpec(name, service, spec);
  }

  /** Starts every service's replicas and waits until each listens on its port. */
  async start(): Promise<void> {
    for (const [service, spec] of Object.entries(this.services)) {
      const replicas = await Promise.all(
        Array.from({ length: spec.replicas }, () => this.startReplica(service)),
      );
      // A replica that is slow or broken at start-up is reported, not fatal: the
      // supervisor restarts what exits, and health checks tell the guards the rest.
      await Promise.all(
        replicas.map((r) =>
          this.waitReady(r).catch((err: Error) =>
            this.emit('unready', { id: r.id, service, error: err.message }),
          ),
        ),
      );
    }
    if (this.healthIntervalMs > 0 && !this.healthTimer) {
      this.healthTimer = setInterval(() => void this.checkAll(), this.healthIntervalMs);
      this.healthTimer.unref();
    }
  }

  /** The live replicas (not those being stopped), of one service or all. */
  replicas(service?: string): Replica[] {
    return [...this.running.values()]
      .filter((r) => !r.stopping && (service === undefined || r.service === service))
      .map(publicView);
  }

  private spec(service: string): ServiceSpec {
    const spec = Object.hasOwn(this.services, service) ? this.services[service] : undefined;
    if (!spec) throw new Error(`no service "${service}" in the process adapter ${this.name}`);
    return spec;
  }

  private async startReplica(service: string, restarts = 0): Promise<Running> {
    const spec = this.spec(service);
    const n = (this.sequence.get(service) ?? 0) + 1;
    this.sequence.set(service, n);
    const id = `${service}-${n}`;
    const port = await this.newPort();
    const child = spawn(spec.command, spec.args ?? [], {
      cwd: spec.cwd,
      env: childEnv(
        spec.env,
        { PORT: String(port), DROVER_SERVICE: service, DROVER_REPLICA_ID: id },
        spec.inheritEnv,
      ),
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const replica: Running = {
      id,
      service,
      pid: child.pid,
      port,
      started: Date.now(),
      restarts,
      healthy: undefined,
      child,
      stopping: false,
      exit: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    if (child.pid === undefined) {
      // spawn reports a missing command asynchronously, as an 'error' event.
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new Error(`${this.name}: ${service} could not start ${spec.command}: ${err.message}`);
    }
    child.on('error', (err) => this.emit('warning', { id, service, error: err.message }));
    this.running.set(id, replica);
    child.once('exit', (code, signal) => this.exited(replica, code, signal));
    this.emit('started', publicView(replica));
    this.emit('change', service);
    return replica;
  }

  /** A free port no replica of this adapter holds, so a replacement never reuses one. */
  private async newPort(): Promise<number> {
    const taken = new Set([...this.running.values()].map((r) => r.port));
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) return port;
    }
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
    this.emit('change', replica.service);
    if (replica.stopping || this.closed) return;
    // Unexpected: restart, backing off while it keeps crashing.
    const now = Date.now();
    const exits = (this.recentExits.get(replica.service) ?? []).filter(
      (t) => now - t < CRASH_WINDOW_MS,
    );
    exits.push(now);
    this.recentExits.set(replica.service, exits);
    const delay = Math.min(30_000, 250 * 2 ** (exits.length - 1));
    if (exits.length >= CRASH_LOOP_EXITS)
      this.emit('crash-loop', {
        service: replica.service,
        exits: exits.length,
        withinMs: CRASH_WINDOW_MS,
        nextRestartMs: delay,
      });
    const timer = setTimeout(() => {
      this.pendingRestarts.delete(timer);
      if (!this.closed)
        this.startReplica(replica.service, replica.restarts + 1).catch((err: Error) =>
          this.emit('restart-failed', { service: replica.service, error: err.message }),
        );
    }, delay);
    timer.unref();
    this.pendingRestarts.add(timer);
  }

  /** Whether a service restarted replicas CRASH_LOOP_EXITS times within the last minute. */
  crashLooping(service: string): boolean {
    const now = Date.now();
    return (
      (this.recentExits.get(service) ?? []).filter((t) => now - t < CRASH_WINDOW_MS).length >=
      CRASH_LOOP_EXITS
    );
  }

  /**
   * The target's form, then the inventory: kill-and-replace needs a live replica this
   * adapter supervises, scale one of its services (or a replica of one).
   */
  async admit(operation: TargetOperation, target: string): Promise<void> {
    expectTarget(target, PROCESS_TARGET, 'a service, replica id, pid or 127.0.0.1:port');
    const known = operation === 'kill-and-replace' ? this.find(target) : this.serviceOf(target);
    if (!known)
      throw new TargetRefused(
        `${this.name} supervises no ${operation === 'kill-and-replace' ? 'live replica' : 'service or replica'} ${shown(target)}`,
        'inventory',
      );
  }

  private find(target: string): Running | undefined {
    for (const r of this.running.values()) {
      if (r.stopping) continue;
      if (
        r.id === target ||
        String(r.pid) === target ||
        `127.0.0.1:${r.port}` === target ||
        `localhost:${r.port}` === target
      )
        return r;
    }
    return undefined;
  }

  private serviceOf(target: string): string | undefined {
    // Own keys only: a target of "constructor" or "__proto__" names no service.
    return Object.hasOwn(this.services, target) ? target : this.find(target)?.service;
  }

  private async stop(replica: Running): Promise<{ signal: 'SIGTERM' | 'SIGKILL' }> {
    replica.stopping = true;
    if (replica.child.exitCode !== null || replica.child.signalCode !== null)
      return { signal: 'SIGTERM' };
    let escalated = false;
    replica.child.kill('SIGTERM');
    const grace = gracePeriod(this.spec(replica.service));
    const timer = setTimeout(() => {
      escalated = true;
      replica.child.kill('SIGKILL');
    }, grace);
    await replica.exit;
    clearTimeout(timer);
    return { signal: escalated ? 'SIGKILL' : 'SIGTERM' };
  }

  /** Resolves once the replica listens on its port (and passes healthPath, if any). */
  private async waitReady(replica: Running): Promise<void> {
    const spec = this.spec(replica.service);
    const readiness = spec.readiness ?? 'none';
    if (readiness === 'none') return;
    const timeoutMs = ms(spec.startTimeout, 10_000, `${replica.service}.startTimeout`);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (replica.child.exitCode !== null || replica.child.signalCode !== null)
        throw new Error(
          `${replica.id} exited (${replica.child.exitCode ?? replica.child.signalCode}) before it was ready`,
        );
      const ok =
        readiness === 'health'
          ? await httpOk(replica.port, spec.healthPath!)
          : await listening(replica.port);
      if (ok) {
        this.setHealth(replica, true);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `${replica.id} did not ${readiness === 'health' ? `answer ${spec.healthPath}` : 'listen'} on port ${replica.port} within ${timeoutMs} ms`,
    );
  }

  private setHealth(replica: Running, healthy: boolean): void {
    if (replica.healthy === healthy) return;
    replica.healthy = healthy;
    this.emit('health', publicView(replica));
    this.emit('change', replica.service);
  }

  private async check(replica: Running): Promise<boolean> {
    const spec = this.spec(replica.service);
    const alive = replica.child.exitCode === null && replica.child.signalCode === null;
    const healthy = alive && (spec.healthPath ? await httpOk(replica.port, spec.healthPath) : true);
    if (!replica.stopping) this.setHealth(replica, healthy);
    return healthy;
  }

  private async checkAll(): Promise<void> {
    await Promise.all([...this.running.values()].map((r) => this.check(r)));
  }

  async killAndReplace(target: string): Promise<ActionResult> {
    const old = this.find(target);
    if (!old)
      throw new Error(
        `no running replica "${target}" in ${this.name} (give a replica id, pid or 127.0.0.1:port)`,
      );
    const fresh = await this.startReplica(old.service);
    try {
      await this.waitReady(fresh);
    } catch (err) {
      // Keep the old replica: a sick one serves better than none.
      await this.stop(fresh);
      throw new Error(`the replacement for ${old.id} failed: ${(err as Error).message}`);
    }
    const { signal } = await this.stop(old);
    return {
      detail: {
        service: old.service,
        killed: { id: old.id, pid: old.pid, port: old.port, signal },
        started: { id: fresh.id, pid: fresh.pid, port: fresh.port },
      },
    };
  }

  async scale(target: string, params: ScaleParams): Promise<ActionResult> {
    const service = this.serviceOf(target);
    if (!service) throw new Error(`no service or replica "${target}" in ${this.name}`);
    const spec = this.spec(service);
    const current = this.replicas(service).length;
    const wanted = params.to ?? current + (params.by ?? 0);
    const min = Math.max(params.min ?? 0, spec.min ?? 0);
    const max = Math.min(
      params.max ?? Number.POSITIVE_INFINITY,
      spec.max ?? Number.POSITIVE_INFINITY,
    );
    if (min > max)
      throw new Error(`${service}: the bounds do not meet (min ${min} is above max ${max})`);
    const to = Math.max(min, Math.min(max, wanted));
    const started = await Promise.all(
      Array.from({ length: Math.max(0, to - current) }, () => this.startReplica(service)),
    );
    await Promise.all(started.map((r) => this.waitReady(r)));
    // Scale down the newest first: the oldest have proven themselves.
    const extra = this.replicas(service)
      .sort((a, b) => b.started - a.started)
      .slice(0, Math.max(0, current - to));
    await Promise.all(extra.map((r) => this.stop(this.running.get(r.id)!)));
    return {
      detail: {
        service,
        from: current,
        to,
        requested: wanted,
        clamped: to !== wanted,
        started: started.map((r) => r.id),
        stopped: extra.map((r) => r.id),
      },
    };
  }

  async notify(_n: Notification): Promise<ActionResult> {
    throw new Error(
      `the process adapter ${this.name} cannot notify: configure a webhook or exec adapter for notify`,
    );
  }

  async describe(target: string): Promise<GroupHealth> {
    const service = this.serviceOf(target);
    if (!service) throw new Error(`no service or replica "${target}" in ${this.name}`);
    const replicas = [...this.running.values()].filter((r) => r.service === service && !r.stopping);
    const members = await Promise.all(
      replicas.map(async (r) => ({ id: r.id, healthy: await this.check(r) })),
    );
    return {
      group: service,
      size: members.length,
      healthy: members.filter((m) => m.healthy).length,
      desired: this.spec(service).replicas,
      members,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.healthTimer);
    for (const t of this.pendingRestarts) clearTimeout(t);
    this.pendingRestarts.clear();
    await Promise.all([...this.running.values()].map((r) => this.stop(r)));
  }
}

function publicView(r: Running): Replica {
  const { id, service, pid, port, started, restarts, healthy } = r;
  return { id, service, pid, port, started, restarts, healthy };
}

function validateSpec(adapter: string, service: string, spec: ServiceSpec): void {
  const where = `process adapter ${adapter}, service ${service}`;
  if (!spec || typeof spec.command !== 'string' || !spec.command)
    throw new Error(`${where}: needs a command`);
  if (!Number.isInteger(spec.replicas) || spec.replicas < 0)
    throw new Error(`${where}: replicas must be an integer ≥ 0`);
  if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max)
    throw new Error(`${where}: min is above max`);
  if (spec.args !== undefined && !Array.isArray(spec.args))
    throw new Error(`${where}: args must be a list`);
  validateInheritEnv(where, spec.inheritEnv);
  if (spec.readiness !== undefined && !['none', 'listen', 'health'].includes(spec.readiness))
    throw new Error(`${where}: readiness is none, listen or health`);
  if (spec.readiness === 'health' && !spec.healthPath)
    throw new Error(`${where}: readiness: health needs a healthPath`);
  gracePeriod(spec);
  ms(spec.startTimeout, 10_000, `${where}: startTimeout`);
}

function gracePeriod(spec: ServiceSpec): number {
  return spec.gracePeriod !== undefined
    ? ms(spec.gracePeriod, 5_000, 'gracePeriod')
    : (spec.graceMs ?? 5_000);
}

function ms(value: string | number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  if (typeof value === 'string') {
    try {
      return parseDuration(value);
    } catch {
      /* reported below */
    }
  }
  throw new Error(`${name}: "${String(value)}" is not a duration`);
}

async function httpOk(port: number, path: string): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(1_000),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * The kernel's ephemeral range where it is known (Linux), else undefined: the ports it
 * gives to a connect() and to a listen on port 0.
 */
function ephemeralRange(): [number, number] | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    return low! > 0 && high! >= low! ? [low!, high!] : undefined;
  } catch {
    return undefined;
  }
}

/** How many ports below the ephemeral range freePort() picks from. */
const BELOW_RANGE = 16_384;
/**
 * Ports this process handed out lately, not handed out again while listed: a replica
 * gets its port before it listens, and so does the demo's Drover. Bounded: the last 256.
 */
const handedOut: number[] = [];

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free loopback port (the $PORT a replica gets; the demo's own). Between this answer
 * and the bind that uses it, another socket may take the port. A port of the kernel's
 * ephemeral range can be taken by any process's connect() or listen on port 0, and a
 * machine running tests or a fleet makes many; so where the range is known the port is
 * picked at random below it (16,384 ports, none under 1024), where only a socket naming
 * that port explicitly can take it. Elsewhere, or after 32 picks already taken: the
 * kernel's answer for port 0.
 */
export async function freePort(): Promise<number> {
  const range = ephemeralRange();
  if (range) {
    const low = Math.max(1024, range[0] - BELOW_RANGE);
    const span = range[0] - low;
    for (let tries = 0; span > 0 && tries < 32; tries++) {
      const port = low + Math.floor(Math.random() * span);
      if (handedOut.includes(port) || !(await bindable(port))) continue;
      return handOut(port);
    }
  }
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    if (!handedOut.includes(port)) return handOut(port);
  }
}

function handOut(port: number): number {
  handedOut.push(port);
  if (handedOut.length > 256) handedOut.shift();
  return port;
}

const factory: AdapterFactory = {
  type: 'process',
  create: (name, options) => {
    if (typeof options.services !== 'object' || options.services === null)
      throw new Error(`process adapter ${name} needs services: { NAME: { command, replicas } }`);
    return new ProcessAdapter(name, {
      services: options.services as Record<string, ServiceSpec>,
      ...(options.healthInterval !== undefined && {
        healthInterval: options.healthInterval as string | number,
      }),
    });
  },
};
export default factory;
