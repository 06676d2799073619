import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Downloads live outside the repository, shared by every checkout on the machine. */
export function cacheDir(name: string): string {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'drover', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * A free loopback port: Drover's own choice (below the kernel's ephemeral range, where
 * the connections the servers and tests make cannot take it before it is bound).
 */
export { freePort } from '../../actions/adapters/process.ts';

export function run(command: string, args: string[], cwd: string): void {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${command} could not run: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(
      `${command} ${args.join(' ')} failed (${r.status}): ${(r.stderr || r.stdout).slice(-2000)}`,
    );
}

/** Fetches Maven artifacts once into dir/libs, through a generated pom. */
export function mavenFetch(dir: string, dependencies: string, marker: string): void {
  if (existsSync(join(dir, marker))) return;
  writeFileSync(
    join(dir, 'pom.xml'),
    `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>dev.drover.test</groupId><artifactId>servers</artifactId><version>1</version>
  <dependencies>${dependencies}</dependencies></project>`,
  );
  run(
    'mvn',
    [
      '-q',
      '-B',
      'dependency:copy-dependencies',
      '-DoutputDirectory=libs',
      '-DincludeScope=runtime',
    ],
    dir,
  );
  if (!existsSync(join(dir, marker))) throw new Error(`maven did not produce ${marker}`);
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.connect(port, '127.0.0.1');
  });
}

/** Each started process's log file, so a start-up failure can quote it. */
const logFiles = new WeakMap<ChildProcess, string>();

/** The last lines of a log file (at most 4 KiB of it), or '' when it cannot be read. */
function logTail(file: string | undefined, lines = 25): string {
  if (!file) return '';
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-4096).split('\n').slice(-lines).join('\n').trim();
  } catch {
    return '';
  }
}

/** The process exited before it was ready (as opposed to: it never answered in time). */
export class ExitedEarly extends Error {}

/**
 * Runs a server's start-up again, up to `tries` times, when its process exits before it is
 * ready: ports come from freePort(), which frees a port before the server binds it, so a
 * server starting beside another (Kafka, Elasticsearch and moto start together) can lose
 * one of its ports to it and exit. Each try picks new ports and a new data directory.
 */
export async function startRetrying<T>(start: () => Promise<T>, tries = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (!(err instanceof ExitedEarly) || attempt >= tries) throw err;
      process.stderr.write(
        `[servers] ${err.message}\n[servers] starting it again (${attempt + 1} of ${tries})\n`,
      );
    }
  }
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  child?: ChildProcess,
): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      const tail = logTail(logFiles.get(child));
      throw new ExitedEarly(
        `${what}: the process exited with ${child.exitCode ?? child.signalCode}${tail ? `; its log ends:\n${tail}` : ''}`,
      );
    }
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not ready after ${timeoutMs / 1000}s`);
}

export function startProcess(
  command: string,
  args: string[],
  options: { cwd: string; logFile: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number },
): ChildProcess {
  const out = openSync(options.logFile, 'a');
  const child = spawn(command, args, {
    cwd: options.cwd,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...options.env },
    ...(options.uid !== undefined && { uid: options.uid, gid: options.gid }),
  });
  logFiles.set(child, options.logFile);
  return child;
}

export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Several test runs start at once on a shared machine (every vitest invocation runs the
 * global setup): one installs while the others wait, so pip never writes a venv twice.
 */
export async function withInstallLock<T>(lock: string, work: () => T): Promise<T> {
  const staleMs = 15 * 60_000;
  const began = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // An installer that died leaves its lock behind; after the longest install, take it over.
      const since = statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
      if (Date.now() - since > staleMs) rmSync(lock, { recursive: true, force: true });
      if (Date.now() - began > staleMs) throw new Error(`${lock} held for over 15 minutes`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return work();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * A Python virtualenv under the cache with `requirements` installed, once: a marker holding
 * the requirements says the install completed (and is redone when they change). Returns the
 * venv's python.
 */
export async function ensurePythonVenv(name: string, requirements: string[]): Promise<string> {
  const venv = join(cacheDir(name), 'venv');
  const python = join(venv, 'bin', 'python');
  const marker = join(venv, '.drover-installed');
  const wanted = `${requirements.join('\n')}\n`;
  const installed = () => existsSync(marker) && readFileSync(marker, 'utf8') === wanted;
  if (installed()) return python;
  await withInstallLock(`${venv}.lock`, () => {
    if (installed()) return;
    if (!existsSync(python)) run('python3', ['-m', 'venv', venv], cacheDir(name));
    run(
      python,
      ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', ...requirements],
      cacheDir(name),
    );
    writeFileSync(marker, wanted);
  });
  return python;
}
