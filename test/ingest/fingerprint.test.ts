import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fingerprint, parseStack } from '../../ingest/index.ts';

const stack = (name: string) =>
  readFileSync(new URL(`./fixtures/stacks/${name}.txt`, import.meta.url), 'utf8');

describe('stack fingerprints on real traces', () => {
  it('Node.js: the same throw for another order, after a deploy that moved lines and paths, shares a fingerprint', () => {
    expect(fingerprint(stack('node-checkout-123'))).toBe(
      fingerprint(stack('node-checkout-456-next-deploy')),
    );
  });

  it('Node.js: a throw from a different function does not', () => {
    expect(fingerprint(stack('node-checkout-123'))).not.toBe(fingerprint(stack('node-refund-123')));
  });

  it('Java: same bug, different order ids (also in the wrapping exception) share; another cause does not', () => {
    expect(fingerprint(stack('java-checkout-123'))).toBe(fingerprint(stack('java-checkout-456')));
    expect(fingerprint(stack('java-checkout-123'))).not.toBe(fingerprint(stack('java-refund')));
  });

  it('Python: same bug shares, another function does not', () => {
    expect(fingerprint(stack('python-checkout-123'))).toBe(
      fingerprint(stack('python-checkout-456')),
    );
    expect(fingerprint(stack('python-checkout-123'))).not.toBe(fingerprint(stack('python-refund')));
  });

  it('parses frames and the error type of each runtime', () => {
    const node = parseStack(stack('node-checkout-123'));
    expect(node.type).toBe('Error');
    expect(node.frames.slice(0, 2).map((f) => f.fn)).toEqual(['chargeCard', 'checkout']);
    const java = parseStack(stack('java-checkout-123'));
    expect(java.type).toBe('java.lang.RuntimeException');
    expect(java.frames.map((f) => f.fn)).toContain('Pay.charge');
    const py = parseStack(stack('python-refund'));
    expect(py.type).toBe('KeyError');
    expect(py.frames.map((f) => f.fn)).toEqual(['<module>', 'refund']);
  });

  it('ignores runtime-internal frames, so a Node.js upgrade keeps fingerprints', () => {
    const upgraded = stack('node-checkout-123').replace(
      /node:internal\/modules\/cjs\/loader:\d+:\d+/g,
      'node:internal/modules/cjs/loader:9999:1',
    );
    const fewerInternals = stack('node-checkout-123')
      .split('\n')
      .filter((l) => !l.includes('Module.load'))
      .join('\n');
    const base = fingerprint(stack('node-checkout-123'));
    expect(fingerprint(upgraded)).toBe(base);
    expect(fingerprint(fewerInternals)).toBe(base);
  });

  it('collapses recursion depth and masks addresses and uuids', () => {
    const a =
      'Error: x\n    at walk (/app/tree.js:3:9)\n    at walk (/app/tree.js:3:9)\n    at main (/app/index.js:1:1)';
    const b = 'Error: y\n    at walk (/app/tree.js:3:9)\n    at main (/app/index.js:1:1)';
    expect(fingerprint(a)).toBe(fingerprint(b));
    const c = 'Error: x\n    at handler (/tmp/9b2c6c1e-5a1e-4c6f-9a63-0e1f2d3c4b5a/app.js:1:1)';
    const d = 'Error: x\n    at handler (/tmp/0f2c6c1e-5a1e-4c6f-9a63-0e1f2d3c4b5b/app.js:1:1)';
    expect(fingerprint(c)).toBe(fingerprint(d));
  });

  it('Go panics: same function, different arguments and offsets, share', () => {
    const a =
      'panic: boom\n\ngoroutine 1 [running]:\nmain.charge(0xc000012345)\n\t/app/main.go:10 +0x1d\nmain.main()\n\t/app/main.go:20 +0x25';
    const b =
      'panic: boom\n\ngoroutine 7 [running]:\nmain.charge(0xc000099999)\n\t/app/main.go:12 +0x2f\nmain.main()\n\t/app/main.go:22 +0x25';
    const c =
      'panic: boom\n\ngoroutine 1 [running]:\nmain.refund(0xc000012345)\n\t/app/main.go:30 +0x1d\nmain.main()\n\t/app/main.go:20 +0x25';
    expect(fingerprint(a)).toBe(fingerprint(b));
    expect(fingerprint(a)).not.toBe(fingerprint(c));
  });
});
