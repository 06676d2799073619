import { describe, expect, it } from 'vitest';
import { groupTiming } from '../../../ingest/bus/kafka.ts';

describe("the Kafka groups' timing (bus.sessionTimeout)", () => {
  it("keeps kafkajs's session and heartbeat at its default session timeout; fetches wait 1 s", () => {
    expect(groupTiming()).toEqual({
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      maxWaitTimeInMs: 1_000,
    });
  });

  it('heartbeats, and waits for messages, at most a third of a shorter session timeout', () => {
    expect(groupTiming(6_000)).toEqual({
      sessionTimeout: 6_000,
      heartbeatInterval: 2_000,
      maxWaitTimeInMs: 1_000,
    });
    expect(groupTiming(2_400).maxWaitTimeInMs).toBe(800);
    const long = groupTiming(1_800_000);
    expect(long.heartbeatInterval).toBe(3_000);
    expect(long.maxWaitTimeInMs).toBe(1_000);
  });
});
