import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** What the tests share to run `drover serve` as a real child process and wait on it. */
export const BIN = join(import.meta.dirname, '..', '..', 'bin', 'drover.js');

export interface Served {
  child: ChildProcess;
  /** From the log line that announces it (http or https). */
  url: string;
  log(): string;
}

const running = new Set<ChildProcess>();

/**
 * The environment a `drover serve` under test inherits: the test run's own, less the
 * variables that point the test setup at a developer's servers (KAFKA_BROKERS,
 * ELASTICSEARCH_URL select the back end in `drover serve` too). A test that wants a
 * back end passes it in `env`, so a developer's broker changes which servers the tests
 * use, not which back end every other test's Drover runs on.
 */
export function serverEnv(): NodeJS.ProcessEnv {
  const { KAFKA_BROKERS: _k, ELASTICSEARCH_URL: _e, ...env } = process.env;
  return env;
}

/**
 * Starts `drover serve --config FILE` (and `args`, `--roles` say) and resolves once it
 * announces its URL.
 */
export function startServe(
  config: string,
  options: {
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    args?: string[];
    /** Another build's bin/drover.js (a benchmark comparing builds). Default: this one's. */
    bin?: string;
    /** Options for node itself, before the script (`--cpu-prof`, say). */
    nodeArgs?: string[];
    /** Another Node.js binary to run it with (a benchmark comparing runtimes). Default: this one. */
    node?: string;
  } = {},
): Promise<Served> {
  const child = spawn(
    options.node ?? process.execPath,
    [
      ...(options.nodeArgs ?? []),
      options.bin ?? BIN,
      'serve',
      '--config',
      config,
      ...(options.args ?? []),
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...serverEnv(), ...options.env },
    },
  );
  running.add(child);
  child.once('exit', () => running.delete(child));
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`drover serve did not start:\n${log}`)),
      options.timeoutMs ?? 30_000,
    );
    child.stderr.on('data', (d: Buffer) => {
      log += d.toString();
      const m = /"url":"(https?:\/\/[^"]+)".*"msg":"drover is serving"/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, log: () => log });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`drover serve exited with ${code}:\n${log}`));
    });
  });
}

/** SIGKILLs every `drover serve` a test left running (for afterEach / afterAll). */
export function killServes(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/** Sends a signal and resolves with the exit code once the process is gone. */
export async function stopServe(
  s: Served,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<number | null> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return s.child.exitCode;
  const exited = new Promise<number | null>((r) => s.child.once('exit', (code) => r(code)));
  s.child.kill(signal);
  // drover serve exits by shutdownTimeout (30 s by default) whatever hangs: past that
  // and a margin, the test fails naming what the process logged last, not by its timeout.
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 45_000)));
  const code = await Promise.race([exited, hung]);
  clearTimeout(timer);
  if (code !== 'hung') return code;
  s.child.kill('SIGKILL');
  const tail = s.log().trim().split('\n').slice(-5).join('\n');
  throw new Error(`drover serve did not exit within 45 s of ${signal}; it logged last:\n${tail}`);
}

/** Polls until `fn` gives something other than undefined or false. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 30_000,
): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A pino error line from service `web` on `host`. */
export const errorLine = (host: string, t: number) =>
  JSON.stringify({ level: 50, time: t, hostname: host, name: 'web', msg: 'failed' });

/**
 * Every error line fires for its host (an `any` rule keyed by host.name), then `action`,
 * one flow-mapping line (`{ adapter: …, operation: … }`); `options`: more rule lines.
 */
export const hostFatalRule = (action: string, options: string[] = []) =>
  [
    'name: host-fatal',
    'type: any',
    'query_key: host.name',
    ...options,
    'filter: { all: [ { fact: log.level, operator: equal, value: error } ] }',
    'actions:',
    `  - ${action}`,
    '',
  ].join('\n');

/** Three errors from one host within ten minutes replace it, through adapter `script`. */
export const HOST_ERROR_BURST_RULE = `name: host-error-burst
type: frequency
query_key: host.name
num_events: 3
timeframe: 10m
realert: 1h
filter: { all: [ { fact: log.level, operator: equal, value: error } ] }
actions:
  - { adapter: script, operation: kill-and-replace, target: "{{ host.name }}" }
`;

/** A temporary folder with the given files (relative paths; folders made as needed). */
export function workdir(prefix: string, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

/**
 * Headers for the control API's admin routes: the token `drover serve` generated into
 * its state directory, and a JSON content type.
 */
export function adminHeaders(stateDir: string): Record<string, string> {
  const token = readFileSync(join(stateDir, 'admin-token'), 'utf8').trim();
  return { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
}
