import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRejections } from '../../../../ingest/sources/http/rejections.ts';

describe('createRejections', () => {
  it('shows the first `limit` by line, in line order, and counts them all, in any order added', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.nat({ max: 10_000 }), { maxLength: 400 }),
        fc.integer({ min: 1, max: 20 }),
        fc.boolean(),
        (lines, limit, sorted) => {
          // Decode errors come in line order; the bus's rejections after, in any order.
          const order = sorted ? [...lines].sort((a, b) => a - b) : lines;
          const r = createRejections(limit);
          for (const line of order) r.add(line, `e${line}`);
          const first = [...lines].sort((a, b) => a - b).slice(0, limit);
          expect(r.shown()).toEqual(first.map((line) => ({ line, error: `e${line}` })));
          expect(r.total).toBe(lines.length);
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
