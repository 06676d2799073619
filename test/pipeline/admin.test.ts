import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { openSqlite } from '../../ingest/storage/sqlite.ts';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BIN,
  errorLine,
  HOST_ERROR_BURST_RULE,
  killServes,
  serverEnv,
  startServe,
  workdir,
} from '../support/drover.ts';

afterAll(killServes);

/** A `drover serve` with the given listen section, and what a test needs to call it. */
async function serveWith(listen: string) {
  const dir = workdir('drover-admin-', {
    'rules/errors.yaml': HOST_ERROR_BURST_RULE,
    'drover.yaml': `stateDir: state
listen: ${listen}
rules: { paths: [rules] }
adapters:
  script: { type: exec, command: /bin/true }
`,
  });
  const run = await startServe(join(dir, 'drover.yaml'));
  const call = (
    method: string,
    path: string,
    o: { token?: string; body?: string; type?: string; headers?: Record<string, string> } = {},
  ) =>
    fetch(`${run.url}${path}`, {
      method,
      ...(o.body !== undefined && { body: o.body }),
      headers: {
        ...(o.type !== undefined && { 'content-type': o.type }),
        ...(o.token !== undefined && { authorization: `Bearer ${o.token}` }),
        ...o.headers,
      },
    });
  /** node:http, since fetch sends its own Host header whatever it is given. */
  const withHost = (
    method: string,
    path: string,
    host: string,
    headers: Record<string, string> = {},
    body?: string,
  ) =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${run.url}${path}`,
        { method, headers: { ...headers, host } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { dir, run, call, withHost };
}

const JSON_TYPE = 'application/json';
const silence = (until: string, matchers: unknown = { rule: 'host-error-burst' }) =>
  JSON.stringify({ matchers, until });
const FUTURE = () => new Date(Date.now() + 3_600_000).toISOString();

describe('the control API on loopback with no credentials configured', () => {
  let s: Awaited<ReturnType<typeof serveWith>>;
  let admin: string;
  beforeAll(async () => {
    s = await serveWith('{ port: 0, statsdPort: false }');
    admin = readFileSync(join(s.dir, 'state', 'admin-token'), 'utf8').trim();
  }, 60_000);

  it('generates an admin token into the state directory, readable by its owner only', () => {
    expect(admin).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(join(s.dir, 'state', 'admin-token')).mode & 0o777).toBe(0o600);
  });

  it('refuses to act without the admin token, as a web page would try', async () => {
    // What any page the operator opens could send: a simple request, text/plain.
    const page = await s.call('POST', '/v1/silences', {
      body: silence('2099-01-01T00:00:00Z'),
      type: 'text/plain',
    });
    expect(page.status).toBe(401);
    expect(
      (await s.call('PUT', '/v1/kill-switch', { body: '{"on":true}', type: JSON_TYPE })).status,
    ).toBe(401);
    expect((await s.call('POST', '/v1/rules/reload')).status).toBe(401);
    expect((await s.call('DELETE', '/v1/silences/1')).status).toBe(401);
    expect(await (await s.call('GET', '/v1/kill-switch')).json()).toEqual({ on: false });
    expect(await (await s.call('GET', '/v1/silences')).json()).toEqual({ silences: [] });
  });

  it('refuses a foreign Host or any Origin (403) and anything but JSON (415), even with the token', async () => {
    const body = JSON.stringify({ on: true });
    const headers = { authorization: `Bearer ${admin}`, 'content-type': JSON_TYPE };
    expect(await s.withHost('PUT', '/v1/kill-switch', 'attacker.example:4280', headers, body)).toBe(
      403,
    );
    // Reads too: a rebinding page would otherwise read the journal.
    expect(await s.withHost('GET', '/v1/actions', 'attacker.example')).toBe(403);
    const origin = await s.call('PUT', '/v1/kill-switch', {
      token: admin,
      body,
      type: JSON_TYPE,
      headers: { origin: 'http://127.0.0.1:4280' },
    });
    expect(origin.status).toBe(403);
    const text = await s.call('PUT', '/v1/kill-switch', { token: admin, body, type: 'text/plain' });
    expect(text.status).toBe(415);
    const form = await s.call('POST', '/v1/rules/reload', {
      token: admin,
      body: 'a=b',
      type: 'application/x-www-form-urlencoded',
    });
    expect(form.status).toBe(415);
    expect(await (await s.call('GET', '/v1/kill-switch')).json()).toEqual({ on: false });
    // localhost by name is this server too.
    expect(await s.withHost('GET', '/v1/rules', 'localhost:4280')).toBe(200);
    expect(await s.withHost('GET', '/v1/rules', '[::1]')).toBe(200);
  });

  it('acts with the admin token: kill switch, silences, reload', async () => {
    const on = await s.call('PUT', '/v1/kill-switch', {
      token: admin,
      body: '{"on":true}',
      type: JSON_TYPE,
    });
    expect(on.status).toBe(200);
    expect(await (await s.call('GET', '/v1/kill-switch')).json()).toEqual({ on: true });
    await s.call('PUT', '/v1/kill-switch', { token: admin, body: '{"on":false}', type: JSON_TYPE });
    const added = await s.call('POST', '/v1/silences', {
      token: admin,
      body: silence(FUTURE()),
      type: JSON_TYPE,
    });
    expect(added.status).toBe(201);
    const { id } = (await added.json()) as { id: number };
    expect((await s.call('DELETE', `/v1/silences/${id}`, { token: admin })).status).toBe(204);
    expect((await s.call('DELETE', `/v1/silences/${id}`, { token: admin })).status).toBe(404);
    const reload = await s.call('POST', '/v1/rules/reload', { token: admin });
    expect(await reload.json()).toMatchObject({ ok: true, rules: 1 });
  });

  it('answers bad admin input with 400 and a message, and stores nothing', async () => {
    const bad = async (body: string, pattern: RegExp, path = '/v1/silences', method = 'POST') => {
      const res = await s.call(method, path, { token: admin, body, type: JSON_TYPE });
      expect(res.status, body).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(pattern);
    };
    await bad('{"matchers": ', /not JSON/);
    await bad('[1,2]', /matchers/);
    await bad(
      JSON.stringify({ matchers: 'rule=x', until: FUTURE() }),
      /matchers must be an object/,
    );
    await bad(silence(FUTURE(), { rule: 5 }), /must be a string/);
    await bad(silence(FUTURE(), { hostname: 'web-1' }), /use rule, type, labels.NAME or key.FIELD/);
    await bad(silence(FUTURE(), {}), /1 to 32 matchers/);
    await bad(silence(FUTURE(), { rule: '~(' }), /Invalid regular expression/);
    await bad(silence('yesterday'), /ISO 8601/);
    await bad(silence('2001-01-01T00:00:00Z'), /in the past/);
    await bad(silence('2099-01-01T00:00:00Z'), /more than 366 days ahead/);
    await bad(JSON.stringify({ matchers: { rule: 'x' }, until: FUTURE(), comment: 7 }), /comment/);
    await bad(
      JSON.stringify({ matchers: { rule: 'x' }, until: FUTURE(), who: 'me' }),
      /unknown field "who"/,
    );
    await bad('{"on":"yes"}', /"on": true/, '/v1/kill-switch', 'PUT');
    await bad('', /"on": true/, '/v1/kill-switch', 'PUT');
    expect((await s.call('DELETE', '/v1/silences/..%2F..', { token: admin })).status).toBe(400);
    expect(await (await s.call('GET', '/v1/silences')).json()).toEqual({ silences: [] });
    expect(await (await s.call('GET', '/v1/kill-switch')).json()).toEqual({ on: false });
  });

  it('answers 503 with Retry-After while another process holds the journal, then acts', async () => {
    const other = openSqlite(join(s.dir, 'state', 'actions.db'));
    other.exec('BEGIN EXCLUSIVE');
    const put = () =>
      s.call('PUT', '/v1/kill-switch', { token: admin, body: '{"on":false}', type: JSON_TYPE });
    const busy = await put();
    other.exec('COMMIT');
    other.close();
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect((await put()).status).toBe(200);
    const metrics = await (await s.call('GET', '/metrics')).text();
    expect(metrics).toMatch(/drover_faults_total\{kind="store-busy"\} 1/);
  }, 40_000);

  it('drover rules reload finds the generated token in the state directory', () => {
    const reload = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      spawnSync(process.execPath, [BIN, 'rules', 'reload', '--url', s.run.url, ...args], {
        encoding: 'utf8',
        env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent', ...env },
        timeout: 60_000,
      });
    const ok = reload(['--config', join(s.dir, 'drover.yaml')]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toBe('rules reloaded: 1\n');
    expect(reload(['--state-dir', join(s.dir, 'state')]).status).toBe(0);
    const none = reload(['--state-dir', join(s.dir, 'elsewhere')]);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/no admin token/);
    const wrong = reload([], { DROVER_ADMIN_TOKEN: 'not-the-token' });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/answered 401: this route needs an admin token/);
  }, 120_000);

  it('drover actions silence goes through the running server, with the admin token', async () => {
    const silence = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      spawnSync(
        process.execPath,
        [
          BIN,
          'actions',
          'silence',
          ...args,
          '--url',
          s.run.url,
          '--state-dir',
          join(s.dir, 'state'),
        ],
        {
          encoding: 'utf8',
          env: { ...serverEnv(), DROVER_LOG_LEVEL: 'silent', ...env },
          timeout: 60_000,
        },
      );
    const added = silence(['add', 'rule=host-error-burst', '--for', '1h', '--format', 'json']);
    expect(added.stderr).toBe('');
    expect(added.status).toBe(0);
    const { id } = JSON.parse(added.stdout) as { id: number };
    // The server's own view has it: the API lists it, and so does the command.
    const listed = (await (await s.call('GET', '/v1/silences')).json()) as {
      silences: Array<{ id: number; matchers: Record<string, string> }>;
    };
    expect(listed.silences).toMatchObject([{ id, matchers: { rule: 'host-error-burst' } }]);
    expect(silence(['list']).stdout).toMatch(
      new RegExp(`^${id}  until .*  rule=host-error-burst\n$`),
    );
    // Without the admin token the server refuses, and nothing changes.
    const wrong = silence(['add', 'rule=x', '--for', '1h'], { DROVER_ADMIN_TOKEN: 'not-it' });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/answered 401: this route needs an admin token/);
    expect(silence(['remove', String(id)]).stdout).toBe(`silence ${id} removed\n`);
    expect(silence(['remove', String(id)]).status).toBe(1);
    expect(await (await s.call('GET', '/v1/silences')).json()).toEqual({ silences: [] });
  }, 120_000);

  it('bounds the journal listing: limit is 1..1000, 100 by default', async () => {
    for (const limit of ['-1', '0', '1001', 'abc', '1e3', ''])
      expect((await s.call('GET', `/v1/actions?limit=${limit}`)).status, limit).toBe(400);
    expect((await s.call('GET', '/v1/actions?limit=1&limit=2')).status).toBe(400);
    expect((await s.call('GET', '/v1/actions?limit=1000')).status).toBe(200);
    expect((await s.call('GET', `/v1/actions?rule=${'r'.repeat(300)}`)).status).toBe(400);
  });
});

describe('the control API with ingest, read and admin tokens', () => {
  let s: Awaited<ReturnType<typeof serveWith>>;
  beforeAll(async () => {
    s = await serveWith(
      '{ port: 0, statsdPort: false, tokens: [ingest-t0ken], readTokens: [read-t0ken], adminTokens: [admin-t0ken] }',
    );
  }, 60_000);

  it('gives each credential its own powers', async () => {
    const line = errorLine('web-1', Date.now());
    const ingest = (token?: string) => s.call('POST', '/ingest', { token, body: line });
    expect((await ingest()).status).toBe(401);
    expect((await ingest('ingest-t0ken')).status).toBe(200);
    expect((await ingest('admin-t0ken')).status).toBe(200);
    expect((await ingest('read-t0ken')).status).toBe(401);

    const reads = ['/v1/actions', '/v1/rules', '/v1/alerts', '/v1/silences', '/metrics'];
    for (const path of [...reads, '/v1/search?q=x']) {
      expect((await s.call('GET', path)).status, path).toBe(401);
      expect((await s.call('GET', path, { token: 'ingest-t0ken' })).status, path).toBe(401);
      expect((await s.call('GET', path, { token: 'read-t0ken' })).status, path).toBe(200);
      expect((await s.call('GET', path, { token: 'admin-t0ken' })).status, path).toBe(200);
    }
    const act = (token: string) =>
      s.call('PUT', '/v1/kill-switch', { token, body: '{"on":true}', type: JSON_TYPE });
    expect((await act('ingest-t0ken')).status).toBe(401);
    expect((await act('read-t0ken')).status).toBe(401);
    expect((await act('admin-t0ken')).status).toBe(200);
    // Search is a read route like the others: the Host check applies to it too.
    const foreign = { authorization: 'Bearer read-t0ken' };
    expect(await s.withHost('GET', '/v1/search?q=x', 'evil.example', foreign)).toBe(403);
    // Probes carry no credential.
    expect((await s.call('GET', '/healthz')).status).toBe(200);
    expect((await s.call('GET', '/readyz')).status).toBe(200);
  });

  it('generates no admin token when the configuration names one', () => {
    expect(() => statSync(join(s.dir, 'state', 'admin-token'))).toThrow(/ENOENT/);
  });
});
