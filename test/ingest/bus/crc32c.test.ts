import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { crc32c } from '../../../ingest/bus/crc32c.ts';

const CRC32C = pathToFileURL(
  join(import.meta.dirname, '..', '..', '..', 'ingest', 'bus', 'crc32c.ts'),
);

/** CRC-32C a byte at a time (the reflected polynomial 0x82F63B78): the reference. */
function reference(buf: Uint8Array): number {
  let crc = -1;
  for (const b of buf) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ -1) >>> 0;
}

it('matches the byte-at-a-time CRC-32C for every length, start and end', () => {
  expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  const buf = Buffer.alloc(300);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 167 + 13) & 0xff;
  for (let start = 0; start < 17; start++)
    for (let end = start; end <= buf.length; end += end < 40 ? 1 : 37)
      expect(crc32c(buf, start, end), `[${start}, ${end})`).toBe(
        reference(buf.subarray(start, end)),
      );
  expect(crc32c(buf, 5, 5)).toBe(0);
});

/**
 * A rules worker checks one CRC-32C per record batch, the first over a large batch: V8
 * compiled that first call's loop on its own (on-stack replacement) before the code
 * after it had run, and that compiled loop, re-entered at every later call, deoptimized
 * on the code after it each time (92–295 times a process). Run in a real Node.js with
 * V8's own trace of deoptimizations.
 */
it('does not deoptimize once per call over large record batches', { timeout: 60_000 }, () => {
  const code = `
    const { crc32c } = await import(${JSON.stringify(CRC32C.href)});
    // 16 batches of 50–350 kB, pseudo-random bytes (half the CRCs have their top bit set).
    let seed = 7;
    const batches = Array.from({ length: 16 }, (_, b) => {
      const buf = Buffer.alloc(50_000 + b * 20_011);
      for (let i = 0; i < buf.length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        buf[i] = seed >>> 24;
      }
      return buf;
    });
    let x = 0;
    for (let r = 0; r < 300; r++) {
      const buf = batches[r % 16];
      x ^= crc32c(buf, 9, buf.length - (r % 8));
    }
    process.stderr.write('done ' + x + '\\n');
  `;
  const child = spawnSync(
    process.execPath,
    ['--trace-deopt', '--import', 'tsx', '--input-type=module', '-e', code],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  expect(child.status, child.stderr).toBe(0);
  expect(child.stderr).toMatch(/^done /m);
  const deopts = child.stdout
    .split('\n')
    .filter((l) => /deoptimizing .*<JSFunction (crc32c|eightAtATime)\b/.test(l));
  // V8 may deoptimize a function a few times as its feedback fills in; not at every call.
  expect(deopts.length, deopts.slice(0, 3).join('\n')).toBeLessThanOrEqual(10);
});
