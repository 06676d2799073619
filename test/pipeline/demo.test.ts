import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'drover.js');

describe('drover demo', () => {
  it('runs a real fleet through five scripted faults, remediates and verifies each, exiting 0', async () => {
    const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(out).toContain('every scripted fault was remediated as expected');
    for (const rule of [
      'api-new-stack-trace',
      'web-replica-silent',
      'web-traffic-surge',
      'worker-crash-loop',
    ]) {
      expect(out).toMatch(new RegExp(`${rule}\\s+.*yes \\([\\d.]+ s\\)\\s+effective\\s*$`, 'm'));
    }
    // The fifth: replacing a replica whose database is down does not help.
    expect(out).toMatch(/report-dependency-down\s+.*yes \([\d.]+ s\)\s+ineffective\s*$/m);
    expect(out).toMatch(/VERIFIED fleet:kill-and-replace report-\d+\s+ineffective: not resolved/);
    expect(out).toMatch(/ACTION\s+pager:notify report-dependency-down/);
    expect(out).toMatch(/GUARD\s+circuit-breaker stopped fleet:kill-and-replace worker-/);
    expect(out).toMatch(/GUARD\s+circuit-breaker stopped fleet:kill-and-replace report-/);
    expect(code, out).toBe(0);
  }, 180_000);
});
