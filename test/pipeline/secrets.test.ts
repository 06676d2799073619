import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { redact } from '../../pipeline/redact.ts';
import { BIN, serverEnv, workdir } from '../support/drover.ts';

/** A port nothing listens on: bound, read, closed. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('credentials stay out of logs and messages', () => {
  it('drover serve with an Elasticsearch URL that carries credentials never prints them', async () => {
    const port = await deadPort();
    const dir = workdir('drover-secrets-', {
      'rules/none.yaml':
        'name: any-fatal\ntype: any\nfilter: { all: [ { fact: log.level, operator: equal, value: fatal } ] }\n',
      'drover.yaml': `stateDir: state
listen: { port: 0, statsdPort: false }
index: { kind: elasticsearch, url: "http://elastic:hunter2-pw@127.0.0.1:${port}/?api_key=k3y-s3cret" }
rules: { paths: [rules] }
`,
    });
    const r = spawnSync(process.execPath, [BIN, 'serve', '--config', join(dir, 'drover.yaml')], {
      encoding: 'utf8',
      env: serverEnv(),
      timeout: 90_000,
    });
    expect(r.status).not.toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/127\.0\.0\.1/);
    expect(out).not.toMatch(/hunter2|k3y-s3cret/);
  }, 120_000);

  it('the CLI prints configuration errors without the credentials in them', () => {
    const dir = workdir('drover-secrets-', {
      'drover.yaml':
        'actions: { store: elasticsearch, url: "ftp://admin:hunter2-pw@es.internal/" }\n',
    });
    const r = spawnSync(
      process.execPath,
      [BIN, 'actions', 'list', '--config', join(dir, 'drover.yaml')],
      { encoding: 'utf8', env: serverEnv(), timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/ftp:\/\/\*\*\*@es\.internal/);
    expect(r.stderr).not.toMatch(/hunter2/);
  });

  it('redact removes userinfo, credential parameters and headers, and nothing else', () => {
    expect(redact('GET https://u:p@es:9200/_bulk?pretty=true&token=abc&x=1 failed')).toBe(
      'GET https://***@es:9200/_bulk?pretty=true&token=***&x=1 failed',
    );
    expect(
      redact('{"url":"http://es:9200/?API_KEY=zzz","headers":{"authorization":"Basic eA=="}}'),
    ).toBe('{"url":"http://es:9200/?API_KEY=***","headers":{"authorization":"***"}}');
    expect(redact('https://es:9200/x?X-Amz-Signature=abc#f')).toBe(
      'https://es:9200/x?X-Amz-Signature=***#f',
    );
    expect(redact('plain text, a=b, mail me@example.com')).toBe(
      'plain text, a=b, mail me@example.com',
    );
  });

  it('takes linear time on hostile text', () => {
    for (const unit of ['://', 'a://b', '?token', '"authorization":"', '&key=', 'x'.repeat(7)]) {
      const text = unit.repeat(Math.ceil(2_000_000 / unit.length));
      const started = performance.now();
      redact(text);
      expect(performance.now() - started, unit).toBeLessThan(1_500);
    }
  });
});
