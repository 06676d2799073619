import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, run, startProcess, stopProcess, waitFor, withInstallLock } from './common.ts';

/**
 * moto's AWS server, installed from PyPI into a virtualenv outside the repository
 * (`${XDG_CACHE_HOME:-~/.cache}/drover/moto-venv`) once, then reused by every run.
 */
const REQUIREMENT = 'moto[server]>=5,<6';

function venvDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'drover', 'moto-venv');
}

/** Creates the venv and installs moto unless a previous install completed (its marker exists). */
export async function ensureMoto(): Promise<string> {
  const venv = venvDir();
  const server = join(venv, 'bin', 'moto_server');
  const marker = join(venv, '.drover-installed');
  if (existsSync(marker)) return server;
  mkdirSync(dirname(venv), { recursive: true });
  await withInstallLock(`${venv}.lock`, () => {
    if (existsSync(marker)) return;
    run('python3', ['-m', 'venv', venv], dirname(venv));
    run(
      join(venv, 'bin', 'python'),
      ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', REQUIREMENT],
      dirname(venv),
    );
    if (!existsSync(server)) throw new Error(`pip installed moto but ${server} is missing`);
    writeFileSync(marker, `${REQUIREMENT}\n`);
  });
  return server;
}

export async function startMoto(): Promise<{ url: string; stop(): Promise<void> }> {
  const server = await ensureMoto();
  const port = await freePort();
  const logDir = dirname(venvDir());
  const child = startProcess(server, ['-H', '127.0.0.1', '-p', String(port)], {
    cwd: logDir,
    logFile: join(logDir, 'moto.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    // moto's own API answers once the server is up; any AWS call would too.
    await waitFor(
      `moto on ${url}`,
      async () => (await fetch(`${url}/moto-api/`)).ok,
      60_000,
      child,
    );
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  return { url, stop: () => stopProcess(child) };
}
