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
    // drover explain on the fifth fault's alert: the firing, the events that counted, the
    // replacement with its guards, its verification, and the page it escalated to.
    const explain = out.slice(out.indexOf('drover explain '));
    expect(explain).toMatch(/drover explain \S+ \(the report-dependency-down alert\)/);
    expect(explain).toMatch(/alert \S+\s+rule report-dependency-down \(frequency\)/);
    expect(explain).toMatch(/events that counted: [1-9]\d* shown/);
    expect(explain).toMatch(/states:\n\s+\S+\s+firing/);
    expect(explain).toMatch(/executed\s+report-dependency-down\s+fleet:kill-and-replace report-/);
    expect(explain).toMatch(/pass cooldown/);
    expect(explain).toMatch(/verification ineffective/);
    expect(explain).toMatch(/executed\s+report-dependency-down\s+pager:notify/);
    expect(code, out).toBe(0);
  }, 180_000);
});
