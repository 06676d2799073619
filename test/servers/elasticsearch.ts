import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cacheDir,
  freePort,
  run,
  startProcess,
  startRetrying,
  stopProcess,
  waitFor,
} from './common.ts';

/**
 * A real Elasticsearch from Maven Central's integ-test-zip: a minimal server (core,
 * x-pack-core and security, no ILM, no data streams, no `GET /`). Security is switched
 * off for loopback tests. Elasticsearch refuses to run as root, so as root it runs as
 * a dedicated system user from a world-readable home. The current major by default;
 * DROVER_TEST_ES_VERSION picks another (CI's compatibility run uses 8.19.2).
 */
/** The version `npm test` runs and `deploy/` ships. */
export const DEFAULT_VERSION = '9.1.0';
export const VERSION = process.env.DROVER_TEST_ES_VERSION ?? DEFAULT_VERSION;
const ES_USER = 'drover-es';

/** Elasticsearch 9 needs Java 21 or newer, 8 runs on 17. */
function requiredJava(version: string): number {
  return Number(version.split('.')[0]) >= 9 ? 21 : 17;
}

/** A JDK's feature version from its `release` file (JAVA_VERSION="21.0.3"), or undefined. */
function jdkVersion(home: string): number | undefined {
  try {
    const m = /^JAVA_VERSION="(\d+)/m.exec(readFileSync(join(home, 'release'), 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * ES_JAVA_HOME if set; otherwise the oldest JDK on the machine (JAVA_HOME, then
 * /usr/lib/jvm/*) that this Elasticsearch supports. Which one was picked is printed,
 * since a wrong JDK shows up only as a start-up failure in Elasticsearch's own log.
 */
function javaHome(): string {
  if (process.env.ES_JAVA_HOME) return process.env.ES_JAVA_HOME;
  const need = requiredJava(VERSION);
  const candidates = [process.env.JAVA_HOME, ...listJvms()].filter(
    (h): h is string => !!h && existsSync(join(h, 'bin', 'java')),
  );
  const usable = candidates
    .map((home) => ({ home, version: jdkVersion(home) }))
    .filter((c): c is { home: string; version: number } => (c.version ?? 0) >= need)
    .sort((a, b) => a.version - b.version);
  const pick = usable[0];
  if (!pick)
    throw new Error(
      `Elasticsearch ${VERSION} needs Java ${need} or newer; found ${candidates.join(', ') || 'none'}: set ES_JAVA_HOME`,
    );
  process.stderr.write(
    `[servers] elasticsearch ${VERSION} runs on Java ${pick.version} (${pick.home})\n`,
  );
  return pick.home;
}

function listJvms(): string[] {
  try {
    return readdirSync('/usr/lib/jvm').map((d) => join('/usr/lib/jvm', d));
  } catch {
    return [];
  }
}

function ensureUser(): { uid: number; gid: number } {
  if (spawnSync('id', ['-u', ES_USER]).status !== 0) {
    run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', ES_USER], '/');
  }
  const uid = Number(spawnSync('id', ['-u', ES_USER], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', ES_USER], { encoding: 'utf8' }).stdout.trim());
  return { uid, gid };
}

export function startElasticsearch(): Promise<{ url: string; stop(): Promise<void> }> {
  return startRetrying(startOnce);
}

async function startOnce(): Promise<{ url: string; stop(): Promise<void> }> {
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
      300_000,
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
