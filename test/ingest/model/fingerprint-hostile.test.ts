import { describe, expect, it } from 'vitest';
import { fingerprint, parseStack } from '../../../ingest/model/index.ts';
import { MAX_FRAMES, MAX_STACK_CHARS } from '../../../ingest/model/fingerprint.ts';

// Generous bound on a 2-core machine shared by 8 engineers; the quadratic frame regex took
// 9.5 s on the first shape, so this still tells linear from quadratic by orders of magnitude.
const BOUND_MS = 50;
const MB = 1 << 20;

const fill = (unit: string, chars: number) => unit.repeat(Math.ceil(chars / unit.length));

/** Wall time of one fingerprint (the fastest of three, so one GC pause does not fail it). */
function timeOf(stack: string): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    fingerprint(`${stack}${i}`); // a fresh string each time, so no cache answers
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

describe('fingerprints of hostile stacks take linear time', () => {
  it('the reported 30 KB frame ("at x", spaces, "x") takes under 50 ms', () => {
    const stack = `Error: x\n    at x${' '.repeat(30_000)}x`;
    expect(timeOf(stack)).toBeLessThan(BOUND_MS);
  });

  const shapes: Record<string, string> = {
    'a line of spaces': `Error: x\n${' '.repeat(MB)}`,
    'an "at" line of spaces and parens': `Error: x\n    at ${fill(' (', MB)}`,
    'spaces inside a frame location': `Error: x\n    at f (${' '.repeat(MB)}:1:1 x`,
    'many "at" lines': `Error: x\n${fill('    at f (/app/a.js:1:1)\n', MB)}`,
    'deeply nested parens': `Error: x\n    at ${'('.repeat(MB / 2)}${')'.repeat(MB / 2)}`,
    'a Java frame of dots and dollars': `java.lang.X: y\n\tat ${fill('a.$$', MB)}(`,
    'many Caused by lines': fill('Caused by: java.lang.X: y\n\tat a.B.c(B.java:1)\n', MB),
    'Python File lines without a closing quote': `Traceback:\n${fill('  File "', MB)}`,
    'a Go function line of braces': `panic: x\n\ngoroutine 1 [running]:\nmain.f(${fill('{0x1, ', MB)}\n\t/a.go:1`,
    'many goroutine headers': `panic: x\n${fill('goroutine 1 [running]:\n', MB)}`,
    'a Ruby line of ":in"': fill('/a.rb:1:in ', MB),
    'a long hex run': `Error: x\n    at f (/app/${fill('0123456789abcdef', MB)}g.js:1:1)`,
    'a .NET line of " in "': `System.X: y\n   at A.B(${fill(') in ', MB)}`,
    'one long line with no newline': fill('at x ', MB),
    'Python exception group margins': `  + Exception Group Traceback (most recent call last):\n${fill('  | + |-+ | ', MB)}`,
    'Ruby labels of nested blocks': Array.from(
      { length: MB / 4000 },
      (_, i) => `/a.rb:1:in '${'block in '.repeat(440)}m${i}'`,
    ).join('\n'),
    '.NET names of nested state machines': Array.from(
      { length: MB / 4000 },
      (_, i) => `   at ${'.<a>d__1'.repeat(490)}${i}.MoveNext()`,
    ).join('\n'),
  };
  for (const [name, stack] of Object.entries(shapes)) {
    it(`1 MB of ${name} takes under ${BOUND_MS} ms`, () => {
      expect(timeOf(stack)).toBeLessThan(BOUND_MS);
    });
  }
});

describe('fingerprints consider a bounded part of the stack', () => {
  const head = 'Error: boom\n    at charge (/app/pay.js:1:1)\n    at checkout (/app/pay.js:2:1)\n';

  it(`only the first ${MAX_STACK_CHARS} characters count`, () => {
    const padded = head + ' '.repeat(MAX_STACK_CHARS);
    expect(fingerprint(`${padded}\n    at refund (/app/refund.js:1:1)`)).toBe(fingerprint(padded));
    expect(fingerprint(`${padded}\n    at refund (/app/refund.js:1:1)`)).toBe(fingerprint(head));
  });

  it('a line cut by the cap is not read as a frame', () => {
    const filler = `${head}${'    at f (/app/f.js:1:1)\n'.repeat(10)}`;
    const spaces = ' '.repeat(MAX_STACK_CHARS - filler.length - 12);
    // The cap falls inside "at refundXYZ": that partial frame must not count.
    const a = `${filler}${spaces}\n    at refundXYZ (/app/r.js:1:1)`;
    const b = `${filler}${spaces}\n    at refundABC (/app/r.js:1:1)`;
    expect(fingerprint(a)).toBe(fingerprint(b));
  });

  it(`only the ${MAX_FRAMES} frames nearest the throw count`, () => {
    const frames = Array.from(
      { length: MAX_FRAMES },
      (_, i) => `    at f${'x'.repeat(i)} (/app/f.js:1:1)`,
    );
    const base = `Error: boom\n${frames.join('\n')}`;
    expect(fingerprint(`${base}\n    at extra (/app/extra.js:1:1)`)).toBe(fingerprint(base));
    expect(fingerprint(`Error: boom\n    at other (/app/o.js:1:1)\n${frames.join('\n')}`)).not.toBe(
      fingerprint(base),
    );
    expect(parseStack(`${base}\n${base.slice(12)}`).frames.length).toBeLessThanOrEqual(MAX_FRAMES);
  });

  it('a huge error type or message is bounded too', () => {
    const stack = `${'E'.repeat(MB)}: x`;
    const type = 'T'.repeat(MB);
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      expect(fingerprint(stack, type)).toMatch(/^[0-9a-f]{16}$/);
      best = Math.min(best, performance.now() - t0);
    }
    expect(best).toBeLessThan(BOUND_MS);
  });
});
