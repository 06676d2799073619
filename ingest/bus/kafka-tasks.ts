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

/**
 * The global rules group's assignment (docs/scale-out.md, "Keys that do not follow the
 * partitioning"): one task made of every partition of every topic, all of it to the
 * first member by sorted member id; the others get nothing and stand by, each ready to
 * take the task over from the changelog when the owner leaves or dies.
 */
export const GLOBAL_ASSIGNER_NAME = 'DroverGlobalTask';

/** Pure: the global task's assignment, every partition to the first member by id. */
export function assignGlobal(
  members: string[],
  partitions: Record<string, number[]>,
): Map<string, Record<string, number[]>> {
  const sorted = [...members].sort();
  const out = new Map<string, Record<string, number[]>>();
  sorted.forEach((id, i) =>
    out.set(
      id,
      Object.fromEntries(
        Object.entries(partitions).map(([t, ps]) => [
          t,
          i === 0 ? [...ps].sort((a, b) => a - b) : [],
        ]),
      ),
    ),
  );
  return out;
}

export const globalAssigner: KafkaJs.PartitionAssigner = ({ cluster }) => ({
  name: GLOBAL_ASSIGNER_NAME,
  version: 0,
  assign({ members, topics }) {
    const { MemberAssignment } = lib().AssignerProtocol;
    const partitions = Object.fromEntries(
      topics.map((t) => [t, cluster.findTopicPartitionMetadata(t).map((m) => m.partitionId)]),
    );
    return Promise.resolve(
      [
        ...assignGlobal(
          members.map((m) => m.memberId),
          partitions,
        ),
      ].map(([memberId, a]) => ({
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
      name: GLOBAL_ASSIGNER_NAME,
      metadata: MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});

/** The tasks (partition numbers) an assignment names, in order. */
export function tasksOf(assignment: Record<string, number[]>): number[] {
  return [...new Set(Object.values(assignment).flat())].sort((a, b) => a - b);
}
