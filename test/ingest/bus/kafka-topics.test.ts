import { describe, expect, it } from 'vitest';
import { createTopicsSettled } from '../../../ingest/bus/kafka-topics.ts';

/**
 * The retry decisions of createTopicsSettled, against an admin that answers as kafkajs
 * 2.2.4's does when a broker's metadata lags the topic's creation (the error's `type`
 * and message as kafkajs builds them). Against the real broker the creation is covered
 * by every Kafka integration test (each makes its topics through it).
 */
function protocolError(type: string, message: string): Error {
  return Object.assign(new Error(message), { type, retriable: true });
}

function admin(script: { create: () => Promise<boolean>; leadersAfter: number }) {
  let calls = 0;
  return {
    metadataCalls: () => calls,
    createTopics: script.create,
    fetchTopicMetadata: async (options?: { topics: string[] }) => {
      const topics = options?.topics;
      calls++;
      if (calls < script.leadersAfter)
        throw protocolError(
          'UNKNOWN_TOPIC_OR_PARTITION',
          'This server does not host this topic-partition',
        );
      return {
        topics: (topics ?? []).map((name) => ({
          name,
          partitions: [0, 1].map((partitionId) => ({
            partitionId,
            leader: 1,
            replicas: [1],
            isr: [1],
            offlineReplicas: [],
            partitionErrorCode: 0,
          })),
        })),
      };
    },
  };
}

const TOPIC = [{ topic: 'drover-rules-state', numPartitions: 2 }];

describe('createTopicsSettled', () => {
  it('a creation whose leader wait met a lagging broker waits for the leaders instead of failing', async () => {
    const a = admin({
      create: async () => {
        throw protocolError(
          'UNKNOWN_TOPIC_OR_PARTITION',
          'This server does not host this topic-partition',
        );
      },
      leadersAfter: 3,
    });
    await createTopicsSettled(a, TOPIC, { delayMs: 1 });
    expect(a.metadataCalls()).toBe(3);
  });

  it('a topic another process created is fine; a real failure is thrown', async () => {
    const existing = admin({ create: async () => false, leadersAfter: 1 });
    await createTopicsSettled(existing, TOPIC, { delayMs: 1 });
    expect(existing.metadataCalls()).toBe(1);
    const refused = admin({
      create: async () => {
        throw protocolError('TOPIC_AUTHORIZATION_FAILED', 'Not authorized to access topics');
      },
      leadersAfter: 1,
    });
    await expect(createTopicsSettled(refused, TOPIC, { delayMs: 1 })).rejects.toThrow(
      /Not authorized/,
    );
  });

  it("gives up after its attempts with the broker's error", async () => {
    const never = admin({ create: async () => true, leadersAfter: 1_000 });
    await expect(createTopicsSettled(never, TOPIC, { attempts: 4, delayMs: 1 })).rejects.toThrow(
      /does not host/,
    );
    expect(never.metadataCalls()).toBe(4);
  });
});
