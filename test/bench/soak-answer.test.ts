import { describe, expect, it } from 'vitest';
import { progressAt, readAnswer } from '../../bench/soak.ts';

// The soak's client counts what the server accepted, not what it sent: a throttled
// `_bulk` is a 200 whose items say 429 (as Elasticsearch's), and those items, not the
// whole body, are sent again after the wait.
describe("the soak client's reading of an answer", () => {
  const action = (i: number) => JSON.stringify({ create: { _index: 'logs', _id: `e${i}` } });
  const doc = (i: number) => JSON.stringify({ message: `event ${i}`, n: i });
  const body = `${[0, 1, 2, 3].flatMap((i) => [action(i), doc(i)]).join('\n')}\n`;
  const item = (status: number, reason?: string) => ({
    create: { status, ...(reason !== undefined && { error: { type: 'x', reason } }) },
  });

  it('counts only the accepted items of a _bulk and hands back the throttled ones', () => {
    const text = JSON.stringify({
      errors: true,
      items: [item(201), item(429, 'bus full'), item(201), item(429, 'bus full')],
    });
    const answer = readAnswer('/_bulk', body, text);
    expect(answer.accepted).toBe(2);
    expect(answer.rejected).toBe(0);
    expect(answer.retry).toBe(`${[action(1), doc(1), action(3), doc(3)].join('\n')}\n`);
  });

  it('counts a refused _bulk item as rejected, not sent again', () => {
    const text = JSON.stringify({
      errors: true,
      items: [item(201), item(400, 'bad field'), item(201), item(201)],
    });
    const answer = readAnswer('/_bulk', body, text);
    expect(answer).toEqual({ accepted: 3, rejected: 1, reason: '400 bad field' });
  });

  it("reads NDJSON's accepted, rejected and omitted", () => {
    const text = JSON.stringify({ accepted: 7, rejected: [{ line: 3, error: 'bad' }], omitted: 2 });
    const answer = readAnswer('/v1/ingest', 'ignored', text);
    expect(answer.accepted).toBe(7);
    expect(answer.rejected).toBe(3);
    expect(answer.reason).toContain('"line":3');
  });
});

describe('when a sampled counter reached a count', () => {
  const series: Array<[number, number]> = [
    [0, 1_000],
    [400, 2_000],
    [1_000, 3_000],
    [1_000, 4_000],
  ];

  it('is interpolated between the samples around it', () => {
    expect(progressAt(series, 200)).toBe(1_500);
    expect(progressAt(series, 700)).toBe(2_500);
    expect(progressAt(series, 400)).toBe(2_000);
  });

  it('is the first sample that reached it when the counter stood still, NaN if never', () => {
    expect(progressAt(series, 1_000)).toBe(3_000);
    expect(progressAt(series, 1_001)).toBeNaN();
  });
});
