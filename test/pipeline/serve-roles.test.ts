import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, serverEnv, workdir } from '../support/drover.ts';

/** `drover serve` as a real process that should refuse to start: its exit and stderr. */
function serve(args: string[], config: string) {
  const r = spawnSync(process.execPath, [BIN, 'serve', '--config', config, ...args], {
    encoding: 'utf8',
    env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent' },
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr };
}

describe('drover serve --roles on the embedded bus', () => {
  it('refuses a split, from the flag or the file, before opening anything', () => {
    const dir = workdir('drover-roles-', {
      'drover.yaml': 'stateDir: state\nlisten: { port: 0, statsdPort: false }\n',
      'split.yaml': 'stateDir: state\nlisten: { port: 0, statsdPort: false }\nroles: [ingest]\n',
    });
    const flag = serve(['--roles', 'ingest'], join(dir, 'drover.yaml'));
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(
      /--roles ingest: the roles can only be split on the Kafka bus \(bus\.kind kafka\)/,
    );
    const file = serve([], join(dir, 'split.yaml'));
    expect(file.code).toBe(2);
    expect(file.stderr).toMatch(
      /split\.yaml:3:8 roles: the roles can only be split on the Kafka bus/,
    );
    const unknown = serve(['--roles', 'ingest,indexer'], join(dir, 'drover.yaml'));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown role "indexer"/);
    // Refused before the bus (or anything else) was opened in the state directory.
    expect(existsSync(join(dir, 'state'))).toBe(false);
  });
});
