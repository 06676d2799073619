import { describe, expect, it } from 'vitest';
import { groupTiming } from '../../../ingest/bus/kafka.ts';

describe("the Kafka groups' timing (bus.sessionTimeout)", () => {
  it("keeps kafkajs's defaults at its default session timeout", () => {
    expect(groupTiming()).toEqual({
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      maxWaitTimeInMs: 5_000,
    });
  });

  it('heartbeats, and waits for messages, at most a third of a shorter session timeout', () => {
    expect(groupTiming(6_000)).toEqual({
      sessionTimeout: 6_000,
      heartbeatInterval: 2_000,
      maxWaitTimeInMs: 2_000,
    });
    const long = groupTiming(1_800_000);
    expect(long.heartbeatInterval).toBe(3_000);
    expect(long.maxWaitTimeInMs).toBe(5_000);
  });
});
