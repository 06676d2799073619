import { describe, expect, it } from 'vitest';
import { assignGlobal } from '../../ingest/bus/kafka-tasks.ts';
import { followsPartitioning, splitRules } from '../../pipeline/rules-tasks.ts';

/**
 * Keys that do not follow the partitioning (docs/scale-out.md): which rules the partition
 * tasks run and which the global task runs, and the global group's assignment.
 */
describe('the rules global task', () => {
  const rule = (name: string, ...query_key: string[]) => ({ name, query_key });

  it('a rule follows the partitioning when its key includes a partition field', () => {
    const fields = ['service.name'];
    expect(followsPartitioning(rule('a', 'service.name'), fields)).toBe(true);
    expect(followsPartitioning(rule('b', 'host.name', 'service.name'), fields)).toBe(true);
    // Spread over services, or no key at all: every task would count a share.
    expect(followsPartitioning(rule('c', 'source.ip'), fields)).toBe(false);
    expect(followsPartitioning(rule('d', 'host.name'), fields)).toBe(false);
    expect(followsPartitioning(rule('e'), fields)).toBe(false);
    // An operator whose hosts are not shared between services adds host.name.
    expect(followsPartitioning(rule('d', 'host.name'), ['service.name', 'host.name'])).toBe(true);
    // A field named like a partition field only in part does not count.
    expect(followsPartitioning(rule('f', 'service.name.keyword'), fields)).toBe(false);
  });

  it('splits the rules in load order', () => {
    const rules = [
      rule('a', 'service.name'),
      rule('b'),
      rule('c', 'user.name'),
      rule('d', 'service.name'),
    ];
    const { partitioned, global } = splitRules(rules, ['service.name']);
    expect(partitioned.map((r) => r.name)).toEqual(['a', 'd']);
    expect(global.map((r) => r.name)).toEqual(['b', 'c']);
    expect(splitRules(rules, []).partitioned).toEqual([]);
  });

  it('assigns every partition of every topic to the first member by id; the others stand by', () => {
    const a = assignGlobal(['m-c', 'm-a', 'm-b'], { logs: [2, 0, 1], metrics: [0, 1, 2] });
    expect([...a.keys()]).toEqual(['m-a', 'm-b', 'm-c']);
    expect(a.get('m-a')).toEqual({ logs: [0, 1, 2], metrics: [0, 1, 2] });
    expect(a.get('m-b')).toEqual({ logs: [], metrics: [] });
    expect(a.get('m-c')).toEqual({ logs: [], metrics: [] });
    // The owner gone, the next by id takes the whole task.
    expect(
      assignGlobal(['m-c', 'm-b'], { logs: [0, 1, 2], metrics: [0, 1, 2] }).get('m-b'),
    ).toEqual({
      logs: [0, 1, 2],
      metrics: [0, 1, 2],
    });
    expect(assignGlobal([], { logs: [0] }).size).toBe(0);
  });
});
