import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, freePort, run, startProcess, stopProcess, waitFor } from './common.ts';

/** moto's AWS server, from PyPI into a virtualenv outside the repository. */
export async function startMoto(): Promise<{ url: string; stop(): Promise<void> }> {
  const home = cacheDir('moto');
  const venv = join(home, 'venv');
  const server = join(venv, 'bin', 'moto_server');
  if (!existsSync(server)) {
    run('python3', ['-m', 'venv', venv], home);
    run(join(venv, 'bin', 'pip'), ['install', '-q', 'moto[server]'], home);
  }
  const port = await freePort();
  const child = startProcess(server, ['-H', '127.0.0.1', '-p', String(port)], {
    cwd: home,
    logFile: join(home, 'moto.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      `moto on ${url}`,
      async () => (await fetch(`${url}/moto-api/`)).status < 500,
      60_000,
      child,
    );
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  return { url, stop: () => stopProcess(child) };
}
