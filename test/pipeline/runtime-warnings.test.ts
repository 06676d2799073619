import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/** A process that logs as serve does, then meets the warnings serve meets. */
const SCRIPT = `
import { createLogger } from './pipeline/logger.ts';
import { logRuntimeWarnings } from './pipeline/runtime-warnings.ts';
const logger = createLogger({ level: process.env.LEVEL });
if (process.env.ROUTE === '1') logRuntimeWarnings(logger);
setTimeout(() => {}, -Date.now());
process.emitWarning('a listener leak', { type: 'MaxListenersExceededWarning', code: 'X1' });
setTimeout(() => {}, 20);
`;

function run(env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], {
    cwd: process.cwd(),
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  expect(r.status).toBe(0);
  return r.stderr
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return l;
      }
    });
}

describe('runtime warnings', () => {
  it('are JSON log lines in serve, never free text on stderr', () => {
    const lines = run({ ROUTE: '1', LEVEL: 'info' });
    expect(lines.every((l) => typeof l === 'object')).toBe(true);
    const warnings = lines.filter((l) => typeof l === 'object' && l.msg === 'runtime warning');
    expect(
      warnings.map((l) => [
        (l as { level: number }).level,
        (l as { runtimeWarning: { name: string } }).runtimeWarning.name,
      ]),
    ).toEqual([
      // A negative timeout warns from Node.js 23 on.
      ...(Number(process.versions.node.split('.')[0]) >= 23
        ? [[40, 'TimeoutNegativeWarning']]
        : []),
      [40, 'MaxListenersExceededWarning'],
    ]);
    expect((warnings.at(-1) as { runtimeWarning: unknown }).runtimeWarning).toEqual({
      name: 'MaxListenersExceededWarning',
      code: 'X1',
      message: 'a listener leak',
    });
  });

  it('without it, Node prints them as text (what the first test guards against)', () => {
    const lines = run({ ROUTE: '0', LEVEL: 'info' });
    expect(
      lines.some((l) => typeof l === 'string' && l.includes('MaxListenersExceededWarning')),
    ).toBe(true);
  });
});
