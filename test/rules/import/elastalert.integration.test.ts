import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';

/**
 * The ElastAlert rule files the import tests convert are valid for ElastAlert 2 itself:
 * each is loaded by ElastAlert's own rule loader (schema, rule type, alerters).
 */
const python = inject('elastalertPython');
const reasons = inject('serverSkipReasons');
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'elastalert');
const VALIDATE = join(import.meta.dirname, '..', '..', 'servers', 'elastalert-validate.py');

function validate(files: string[]) {
  const r = spawnSync(python!, [VALIDATE, ...files], {
    encoding: 'utf8',
    timeout: 120_000,
    // ElastAlert's loader reads relative imports from the working folder: the fixtures'.
    cwd: FIXTURES,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!python)(
  `ElastAlert 2 accepts the import fixtures${reasons.elastalert ? ` (skipped: ${reasons.elastalert})` : ''}`,
  () => {
    it('loads every fixture as a valid rule', () => {
      const files = (readdirSync(FIXTURES, { recursive: true }) as string[])
        .filter((f) => f.endsWith('.yaml'))
        .sort();
      expect(files.length).toBeGreaterThanOrEqual(18);
      const r = validate(files);
      expect(r.stdout.trim().split('\n')).toEqual(files.map((f) => `ok ${f}`));
      expect(r.code).toBe(0);
    }, 120_000);

    it('refuses a rule ElastAlert would refuse, so the check above means something', () => {
      const dir = mkdtempSync(join(tmpdir(), 'drover-elastalert-'));
      const bad = join(dir, 'frequency-without-num-events.yaml');
      writeFileSync(
        bad,
        'name: x\ntype: frequency\nindex: logs-*\ntimeframe: {minutes: 1}\nalert: [debug]\n',
      );
      const typo = join(dir, 'spike-height-text.yaml');
      writeFileSync(
        typo,
        'name: y\ntype: spike\nindex: logs-*\ntimeframe: {minutes: 1}\nspike_height: high\nspike_type: up\nalert: [debug]\n',
      );
      const r = validate([bad, typo]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`invalid ${bad}`);
      expect(r.stdout).toContain(`invalid ${typo}`);
    }, 120_000);
  },
);
