import {
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  SetDesiredCapacityCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import {
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
} from './types.ts';

/**
 * AWS Auto Scaling groups: kill-and-replace terminates an instance with
 * ShouldDecrementDesiredCapacity=false, so the group launches a replacement; scale sets
 * the desired capacity within the group's own MinSize/MaxSize and the rule's bounds.
 * AWS saying "not now" (a scaling activity in progress, contention) is a suppression.
 */
export interface AwsAsgOptions {
  region?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  honorCooldown?: boolean;
}

const DECLINED = new Set([
  'ScalingActivityInProgress',
  'ScalingActivityInProgressFault',
  'ResourceContention',
  'ResourceContentionFault',
]);

export class AwsAsgAdapter implements Adapter {
  readonly type = 'aws-asg';
  private readonly client: AutoScalingClient;

  constructor(
    readonly name: string,
    private readonly options: AwsAsgOptions,
  ) {
    this.client = new AutoScalingClient({
      region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
      ...(options.endpoint && { endpoint: options.endpoint }),
      ...(options.credentials && { credentials: options.credentials }),
    });
  }

  /** Runs an AWS call, turning AWS's "not now" into a suppression. */
  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      const name = (err as { name?: string }).name ?? '';
      if (DECLINED.has(name)) throw new AdapterDeclined((err as Error).message, name);
      throw err;
    }
  }

  private async group(name: string) {
    const out = await this.call(() =>
      this.client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] })),
    );
    const group = out.AutoScalingGroups?.[0];
    if (!group) throw new Error(`no auto scaling group "${name}"`);
    return group;
  }

  async killAndReplace(target: string): Promise<ActionResult> {
    const out = await this.call(() =>
      this.client.send(
        new TerminateInstanceInAutoScalingGroupCommand({
          InstanceId: target,
          ShouldDecrementDesiredCapacity: false,
        }),
      ),
    );
    return {
      detail: {
        instance: target,
        activity: out.Activity?.ActivityId,
        description: out.Activity?.Description,
        status: out.Activity?.StatusCode,
      },
    };
  }

  async scale(target: string, params: ScaleParams): Promise<ActionResult> {
    const group = await this.group(target);
    const current = group.DesiredCapacity ?? 0;
    const wanted = params.to ?? current + (params.by ?? 0);
    const min = Math.max(group.MinSize ?? 0, params.min ?? 0);
    const max = Math.min(
      group.MaxSize ?? Number.POSITIVE_INFINITY,
      params.max ?? Number.POSITIVE_INFINITY,
    );
    const to = Math.max(min, Math.min(max, wanted));
    await this.call(() =>
      this.client.send(
        new SetDesiredCapacityCommand({
          AutoScalingGroupName: target,
          DesiredCapacity: to,
          HonorCooldown: this.options.honorCooldown ?? false,
        }),
      ),
    );
    return { detail: { group: target, from: current, to, requested: wanted } };
  }

  async describe(target: string): Promise<GroupHealth> {
    // A target may be the group or one of its instances.
    let group;
    if (target.startsWith('i-')) {
      const all = await this.call(() => this.client.send(new DescribeAutoScalingGroupsCommand({})));
      const owner = all.AutoScalingGroups?.find((g) =>
        g.Instances?.some((i) => i.InstanceId === target),
      )?.AutoScalingGroupName;
      if (!owner) throw new Error(`instance ${target} is in no auto scaling group`);
      group = await this.group(owner);
    } else group = await this.group(target);
    const members = (group.Instances ?? []).map((i) => ({
      id: i.InstanceId ?? '',
      healthy: i.LifecycleState === 'InService' && i.HealthStatus === 'Healthy',
    }));
    return {
      group: group.AutoScalingGroupName ?? target,
      size: members.length,
      healthy: members.filter((m) => m.healthy).length,
      desired: group.DesiredCapacity,
      members,
    };
  }

  async notify(_n: Notification): Promise<ActionResult> {
    throw new Error(
      `the aws-asg adapter ${this.name} cannot notify: configure a webhook or exec adapter for notify`,
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

const factory: AdapterFactory = {
  type: 'aws-asg',
  create: (name, options) => new AwsAsgAdapter(name, options as AwsAsgOptions),
};
export default factory;
