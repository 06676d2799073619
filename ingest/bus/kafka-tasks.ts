import type * as KafkaJs from 'kafkajs';
import { kafkajs } from './kafkajs.ts';

/**
 * The rules group's assignment by task (docs/scale-out.md, "Rules workers"): a task is
 * partition _i_ of every topic the rules read. Drover keys `logs` and `metrics` by
 * `service.name` and creates them with the same number of partitions, so partition _i_
 * of both holds the same services (co-partitioning); the whole task goes to one member,
 * which holds one engine for it.
 *
 * Tasks are dealt round-robin over the members sorted by member id. The leader computes
 * the assignment from the partition counts it sees; topics whose counts differ are
 * refused by the worker at start (`checkCoPartitioned`), not here.
 */
export const TASK_ASSIGNER_NAME = 'DroverTasks';

const lib = kafkajs;

export const taskAssigner: KafkaJs.PartitionAssigner = ({ cluster }) => ({
  name: TASK_ASSIGNER_NAME,
  version: 0,
  assign({ members, topics }) {
    const { MemberAssignment } = lib().AssignerProtocol;
    const sorted = members.map((m) => m.memberId).sort();
    const partitions = new Map<string, number[]>();
    let tasks = 0;
    for (const topic of topics) {
      const ids = cluster
        .findTopicPartitionMetadata(topic)
        .map((m) => m.partitionId)
        .sort((a, b) => a - b);
      partitions.set(topic, ids);
      tasks = Math.max(tasks, ids.length);
    }
    const assignment = new Map<string, Record<string, number[]>>(
      sorted.map((id) => [id, Object.fromEntries(topics.map((t) => [t, [] as number[]]))]),
    );
    for (let task = 0; task < tasks && sorted.length > 0; task++) {
      const member = assignment.get(sorted[task % sorted.length]!)!;
      for (const topic of topics)
        if (partitions.get(topic)!.includes(task)) member[topic]!.push(task);
    }
    return Promise.resolve(
      [...assignment].map(([memberId, a]) => ({
        memberId,
        memberAssignment: MemberAssignment.encode({
          version: 0,
          assignment: a,
          userData: Buffer.alloc(0),
        }),
      })),
    );
  },
  protocol({ topics }) {
    const { MemberMetadata } = lib().AssignerProtocol;
    return {
      name: TASK_ASSIGNER_NAME,
      metadata: MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});

/** The tasks (partition numbers) an assignment names, in order. */
export function tasksOf(assignment: Record<string, number[]>): number[] {
  return [...new Set(Object.values(assignment).flat())].sort((a, b) => a - b);
}
