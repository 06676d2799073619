import type { Admin, ITopicConfig } from 'kafkajs';

/**
 * Errors kafkajs's `createTopics` throws when the topics were created but the broker it
 * asked for their metadata does not list them yet: with `waitForLeaders` it retries only
 * LEADER_NOT_AVAILABLE, and a broker whose metadata lags the controller's (a fresh
 * KRaft broker, workers starting together) answers UNKNOWN_TOPIC_OR_PARTITION ("This
 * server does not host this topic-partition") for a moment; its wait can also time out.
 */
const SETTLING = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

function settling(err: unknown): boolean {
  const e = err as { type?: unknown; message?: unknown; errors?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  if (typeof e.type === 'string' && SETTLING.has(e.type)) return true;
  if (typeof e.message === 'string' && e.message.includes('waiting for topic leaders')) return true;
  return Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(settling);
}

/**
 * Creates the topics (another process having created them first is fine), then waits
 * until the metadata lists each with its partitions, each with a leader (how many
 * partitions a topic another process made has is the caller's to check): up to
 * `attempts` × `delayMs` (5 s by default) before it gives up with the last error or a
 * clear message. A creation that failed only because the broker's metadata lagged is
 * not an error.
 */
export async function createTopicsSettled(
  admin: Pick<Admin, 'createTopics' | 'fetchTopicMetadata'>,
  topics: ITopicConfig[],
  options: { attempts?: number; delayMs?: number } = {},
): Promise<void> {
  try {
    await admin.createTopics({ waitForLeaders: true, topics });
  } catch (err) {
    if (!settling(err)) throw err;
  }
  const attempts = options.attempts ?? 20;
  const delayMs = options.delayMs ?? 250;
  let missing = topics.map((t) => t.topic);
  let last: unknown;
  for (let attempt = 0; ; attempt++) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: missing });
      const ready = new Set(
        meta.topics
          .filter((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))
          .map((t) => t.name),
      );
      missing = missing.filter((t) => !ready.has(t));
      if (missing.length === 0) return;
    } catch (err) {
      if (!settling(err)) throw err;
      last = err;
    }
    if (attempt + 1 >= attempts)
      throw last instanceof Error
        ? last
        : new Error(`topics ${missing.join(', ')} have no leaders yet after their creation`);
    await new Promise((r) => setTimeout(r, delayMs));
  }
}
