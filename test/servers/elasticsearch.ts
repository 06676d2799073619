import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir, freePort, run, startProcess, stopProcess, waitFor } from './common.ts';

/**
 * A real Elasticsearch 8 from Maven Central's integ-test-zip: a minimal server (core,
 * x-pack-core and security, no ILM, no data streams, no `GET /`). Security is switched
 * off for loopback tests. Elasticsearch refuses to run as root, so as root it runs as
 * a dedicated system user from a world-readable home.
 */
export const VERSION = '8.19.2';
const ES_USER = 'drover-es';

function javaHome(): string {
  if (process.env.ES_JAVA_HOME) return process.env.ES_JAVA_HOME;
  for (const candidate of [
    '/usr/lib/jvm/java-17-openjdk-amd64',
    '/usr/lib/jvm/java-21-openjdk-amd64',
  ]) {
    if (existsSync(join(candidate, 'bin', 'java'))) return candidate;
  }
  if (process.env.JAVA_HOME) return process.env.JAVA_HOME;
  throw new Error('no JDK found for Elasticsearch: set ES_JAVA_HOME');
}

function ensureUser(): { uid: number; gid: number } {
  if (spawnSync('id', ['-u', ES_USER]).status !== 0) {
    run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', ES_USER], '/');
  }
  const uid = Number(spawnSync('id', ['-u', ES_USER], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', ES_USER], { encoding: 'utf8' }).stdout.trim());
  return { uid, gid };
}

export async function startElasticsearch(): Promise<{ url: string; stop(): Promise<void> }> {
  const cache = cacheDir(`elasticsearch-${VERSION}`);
  const zip = join(cache, `elasticsearch-${VERSION}.zip`);
  if (!existsSync(zip)) {
    run(
      'mvn',
      [
        '-q',
        '-B',
        'dependency:copy',
        `-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:${VERSION}:zip`,
        `-DoutputDirectory=${cache}`,
      ],
      cache,
    );
  }
  const root = process.getuid?.() === 0;
  const owner = root ? ensureUser() : undefined;
  const base = root ? '/var/cache/drover' : cache;
  mkdirSync(base, { recursive: true });
  const home = join(base, `elasticsearch-${VERSION}`);
  if (!existsSync(join(home, 'bin', 'elasticsearch'))) {
    rmSync(home, { recursive: true, force: true });
    run('unzip', ['-q', '-o', zip, '-d', base], base);
    if (owner) run('chown', ['-R', `${owner.uid}:${owner.gid}`, home], base);
  }
  const data = mkdtempSync(join(tmpdir(), 'drover-es-'));
  for (const dir of ['data', 'logs']) mkdirSync(join(data, dir));
  if (owner) run('chown', ['-R', `${owner.uid}:${owner.gid}`, data], data);
  const port = await freePort();
  const transport = await freePort();
  const child = startProcess(
    join(home, 'bin', 'elasticsearch'),
    [
      '-E',
      'discovery.type=single-node',
      '-E',
      'network.host=127.0.0.1',
      '-E',
      `http.port=${port}`,
      '-E',
      `transport.port=${transport}`,
      '-E',
      `path.data=${join(data, 'data')}`,
      '-E',
      `path.logs=${join(data, 'logs')}`,
      '-E',
      'xpack.security.enabled=false',
      '-E',
      'cluster.routing.allocation.disk.threshold_enabled=false',
      '-E',
      'action.destructive_requires_name=false',
    ],
    {
      cwd: home,
      logFile: join(data, 'elasticsearch.out'),
      env: { ES_JAVA_HOME: javaHome(), ES_JAVA_OPTS: '-Xms512m -Xmx512m' },
      ...(owner && { uid: owner.uid, gid: owner.gid }),
    },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      `Elasticsearch on ${url} (log: ${join(data, 'elasticsearch.out')})`,
      async () => {
        const res = await fetch(`${url}/_cluster/health?wait_for_status=yellow&timeout=1s`);
        return res.ok;
      },
      180_000,
      child,
    );
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  return {
    url,
    async stop() {
      await stopProcess(child, 20_000);
      rmSync(data, { recursive: true, force: true });
    },
  };
}
