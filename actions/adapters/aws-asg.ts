/**
 * AWS Auto Scaling groups: kill-and-replace terminates an instance with
 * ShouldDecrementDesiredCapacity=false, so the group launches a replacement; scale sets
 * the desired capacity within the group's own MinSize/MaxSize and the rule's bounds.
 * AWS saying "not now" (a scaling activity in progress, contention) is a suppression.
 * Credentials come from the options or the SDK's default chain (env, profile, IMDS).
 */

import { createRequire } from 'node:module';
import type { AutoScalingClient, AutoScalingGroup } from '@aws-sdk/client-auto-scaling';
import type * as AwsAutoScaling from '@aws-sdk/client-auto-scaling';
import {
  type ActionContext,
  type ActionResult,
  type Adapter,
  AdapterDeclined,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
  type TargetOperation,
  TargetRefused,
} from './types.ts';
import { expectTarget, shown } from './target-checks.ts';

export interface AwsAsgOptions {
  region?: string;
  /** Another endpoint than AWS's own (moto, LocalStack, a VPC endpoint). */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Pass HonorCooldown to SetDesiredCapacity: AWS refuses while the group's cooldown runs. Default false. */
  honorCooldown?: boolean;
  /** The groups this adapter may act on (by name); default: any group the credentials reach. */
  groups?: string[];
}

/** AWS's "not now" errors, by SDK exception name and by wire code. */
const DECLINED: Record<string, string> = {
  ScalingActivityInProgressFault: 'scaling-activity-in-progress',
  ScalingActivityInProgress: 'scaling-activity-in-progress',
  ResourceContentionFault: 'resource-contention',
  ResourceContention: 'resource-contention',
};

const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
/**
 * Auto Scaling group names: 1-255 characters, no colon (that would be an ARN), no
 * whitespace or control character, not starting with `-`.
 */
const GROUP_NAME = /^(?!-)[^:\s\p{Cc}]{1,255}$/u;
const OPTION_NAMES = new Set(['region', 'endpoint', 'credentials', 'honorCooldown', 'groups']);

/** Checks the configured options, so a typo fails at start-up and not at the first incident. */
export function validateAwsAsgOptions(name: string, raw: Record<string, unknown>): void {
  const where = `aws-asg adapter "${name}"`;
  for (const key of Object.keys(raw))
    if (!OPTION_NAMES.has(key))
      throw new Error(`${where}: unknown option "${key}" (known: ${[...OPTION_NAMES].join(', ')})`);
  if (
    raw.region !== undefined &&
    (typeof raw.region !== 'string' || !/^[a-z0-9-]+$/.test(raw.region))
  )
    throw new Error(`${where}: region must be a region name such as us-east-1`);
  if (raw.endpoint !== undefined) {
    if (typeof raw.endpoint !== 'string' || !URL.canParse(raw.endpoint))
      throw new Error(`${where}: endpoint must be a URL`);
  }
  const c = raw.credentials as Record<string, unknown> | undefined;
  if (
    c !== undefined &&
    (c === null ||
      typeof c !== 'object' ||
      typeof c.accessKeyId !== 'string' ||
      typeof c.secretAccessKey !== 'string' ||
      (c.sessionToken !== undefined && typeof c.sessionToken !== 'string'))
  )
    throw new Error(
      `${where}: credentials must be { accessKeyId, secretAccessKey, sessionToken? } strings`,
    );
  if (raw.honorCooldown !== undefined && typeof raw.honorCooldown !== 'boolean')
    throw new Error(`${where}: honorCooldown must be true or false`);
  const groups = raw.groups;
  if (
    groups !== undefined &&
    (!Array.isArray(groups) ||
      groups.length === 0 ||
      !groups.every((g) => typeof g === 'string' && GROUP_NAME.test(g)))
  )
    throw new Error(`${where}: groups must be a non-empty list of Auto Scaling group names`);
}

function checkScaleParams(params: ScaleParams): void {
  if (params.to === undefined && params.by === undefined)
    throw new Error('scale needs params.to (capacity) or params.by (a change)');
  for (const key of ['to', 'by', 'min', 'max'] as const)
    if (params[key] !== undefined && !Number.isInteger(params[key]))
      throw new Error(`scale: params.${key} must be a whole number`);
  if (params.to !== undefined && params.to < 0)
    throw new Error('scale: params.to must be 0 or more');
  if (params.min !== undefined && params.max !== undefined && params.min > params.max)
    throw new Error(`scale: params.min (${params.min}) is above params.max (${params.max})`);
}

// The AWS SDK is loaded when an aws-asg adapter is first made, not when Drover starts.
const requireLib = createRequire(import.meta.url);
let awsAutoScalingLib: typeof AwsAutoScaling | undefined;
function awsAutoScaling(): typeof AwsAutoScaling {
  return (awsAutoScalingLib ??= requireLib(
    '@aws-sdk/client-auto-scaling',
  ) as typeof AwsAutoScaling);
}

export class AwsAsgAdapter implements Adapter {
  readonly type = 'aws-asg';
  private readonly client: AutoScalingClient;

  constructor(
    readonly name: string,
    private readonly options: AwsAsgOptions = {},
  ) {
    validateAwsAsgOptions(name, options as Record<string, unknown>);
    // Without a region the SDK's own chain decides (AWS_REGION, the profile); never a guess,
    // which could act on a same-named group elsewhere.
    this.client = new (awsAutoScaling().AutoScalingClient)({
      ...(options.region && { region: options.region }),
      ...(options.endpoint && { endpoint: options.endpoint }),
      ...(options.credentials && { credentials: options.credentials }),
    });
  }

  /** Runs one AWS call: "not now" becomes a suppression, anything else a failure naming the call. */
  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      const e = err as { name?: string; Code?: string; message?: string };
      const code = e.name && e.name !== 'Error' ? e.name : (e.Code ?? 'Error');
      const reason = DECLINED[code] ?? (e.Code ? DECLINED[e.Code] : undefined);
      if (reason) throw new AdapterDeclined(`${what}: ${e.message}`, reason);
      throw new Error(`aws-asg adapter "${this.name}": ${what}: ${code}: ${e.message}`, {
        cause: err,
      });
    }
  }

  /** Refuses a group outside the configured `groups`. */
  private inBoundary(group: string): void {
    if (this.options.groups && !this.options.groups.includes(group))
      throw new TargetRefused(
        `Auto Scaling group ${shown(group)} is not one of the aws-asg adapter "${this.name}"'s groups`,
        'target',
      );
  }

  /**
   * The target's form, then the inventory: kill-and-replace needs an instance that is in
   * an Auto Scaling group (one of `groups`, if set), scale a group that exists.
   */
  async admit(operation: TargetOperation, target: string, signal?: AbortSignal): Promise<void> {
    if (operation === 'kill-and-replace') {
      expectTarget(target, INSTANCE_ID, 'an EC2 instance id (i-0123456789abcdef0)');
      const out = await this.call(`DescribeAutoScalingInstances ${target}`, () =>
        this.client.send(
          new (awsAutoScaling().DescribeAutoScalingInstancesCommand)({ InstanceIds: [target] }),
          {
            abortSignal: signal,
          },
        ),
      );
      const group = out.AutoScalingInstances?.[0]?.AutoScalingGroupName;
      if (!group)
        throw new TargetRefused(`instance ${target} is in no Auto Scaling group`, 'inventory');
      this.inBoundary(group);
      return;
    }
    expectTarget(target, GROUP_NAME, 'an Auto Scaling group name');
    this.inBoundary(target);
    const out = await this.call(`DescribeAutoScalingGroups ${target}`, () =>
      this.client.send(
        new (awsAutoScaling().DescribeAutoScalingGroupsCommand)({
          AutoScalingGroupNames: [target],
        }),
        {
          abortSignal: signal,
        },
      ),
    );
    if (!out.AutoScalingGroups?.length)
      throw new TargetRefused(`no Auto Scaling group ${shown(target)}`, 'inventory');
  }

  private async group(name: string, signal?: AbortSignal): Promise<AutoScalingGroup> {
    if (!GROUP_NAME.test(name))
      throw new TargetRefused(`${shown(name)} is not an Auto Scaling group name`, 'target');
    this.inBoundary(name);
    const out = await this.call(`DescribeAutoScalingGroups ${name}`, () =>
      this.client.send(
        new (awsAutoScaling().DescribeAutoScalingGroupsCommand)({ AutoScalingGroupNames: [name] }),
        {
          abortSignal: signal,
        },
      ),
    );
    const group = out.AutoScalingGroups?.[0];
    if (!group) throw new Error(`aws-asg adapter "${this.name}": no Auto Scaling group "${name}"`);
    return group;
  }

  /** The group an instance belongs to, and where it is in its lifecycle. */
  private async groupOf(
    instanceId: string,
    signal?: AbortSignal,
  ): Promise<{ group: string; lifecycle?: string }> {
    if (!INSTANCE_ID.test(instanceId))
      throw new TargetRefused(
        `${shown(instanceId)} is not an EC2 instance id (i-0123456789abcdef0)`,
        'target',
      );
    const out = await this.call(`DescribeAutoScalingInstances ${instanceId}`, () =>
      this.client.send(
        new (awsAutoScaling().DescribeAutoScalingInstancesCommand)({ InstanceIds: [instanceId] }),
        {
          abortSignal: signal,
        },
      ),
    );
    const instance = out.AutoScalingInstances?.[0];
    if (!instance?.AutoScalingGroupName)
      throw new Error(
        `aws-asg adapter "${this.name}": instance ${instanceId} is in no Auto Scaling group`,
      );
    this.inBoundary(instance.AutoScalingGroupName);
    return { group: instance.AutoScalingGroupName, lifecycle: instance.LifecycleState };
  }

  async killAndReplace(target: string, ctx?: ActionContext): Promise<ActionResult> {
    // Asking for the group first gives a clear error for a stray id and names the group in the journal.
    const { group, lifecycle } = await this.groupOf(target, ctx?.signal);
    // Already on its way out (a replay, or someone else's action): the replacement is coming.
    if (lifecycle?.startsWith('Terminating'))
      return { detail: { instance: target, group, lifecycle, via: 'already-terminating' } };
    const out = await this.call(`TerminateInstanceInAutoScalingGroup ${target}`, () =>
      this.client.send(
        new (awsAutoScaling().TerminateInstanceInAutoScalingGroupCommand)({
          InstanceId: target,
          ShouldDecrementDesiredCapacity: false,
        }),
        { abortSignal: ctx?.signal },
      ),
    );
    return {
      detail: {
        instance: target,
        group,
        via: 'terminate',
        activity: out.Activity?.ActivityId,
        description: out.Activity?.Description,
        status: out.Activity?.StatusCode,
      },
    };
  }

  async scale(target: string, params: ScaleParams, ctx?: ActionContext): Promise<ActionResult> {
    checkScaleParams(params);
    const group = await this.group(target, ctx?.signal);
    const current = group.DesiredCapacity ?? 0;
    const requested = params.to ?? current + (params.by ?? 0);
    const groupMin = group.MinSize ?? 0;
    const groupMax = group.MaxSize ?? Number.POSITIVE_INFINITY;
    const lo = Math.max(groupMin, params.min ?? 0);
    const hi = Math.min(groupMax, params.max ?? Number.POSITIVE_INFINITY);
    // Where the rule's bounds and the group's disagree, the group's win: AWS refuses a
    // capacity outside MinSize..MaxSize.
    const to = Math.max(groupMin, Math.min(groupMax, Math.min(hi, Math.max(lo, requested))));
    const detail = {
      group: target,
      from: current,
      to,
      requested,
      groupBounds: { min: group.MinSize, max: group.MaxSize },
      changed: to !== current,
    };
    if (!detail.changed) return { detail };
    await this.call(`SetDesiredCapacity ${target} ${to}`, () =>
      this.client.send(
        new (awsAutoScaling().SetDesiredCapacityCommand)({
          AutoScalingGroupName: target,
          DesiredCapacity: to,
          HonorCooldown: this.options.honorCooldown ?? false,
        }),
        { abortSignal: ctx?.signal },
      ),
    );
    return { detail };
  }

  /** A target is a group name or one of its instances' ids. */
  async describe(target: string): Promise<GroupHealth> {
    const name = INSTANCE_ID.test(target) ? (await this.groupOf(target)).group : target;
    const group = await this.group(name);
    const members = (group.Instances ?? []).map((i) => ({
      id: i.InstanceId ?? '',
      // AWS reports Healthy; some tools and moto have sent HEALTHY.
      healthy: i.LifecycleState === 'InService' && i.HealthStatus?.toLowerCase() === 'healthy',
    }));
    return {
      group: name,
      size: members.length,
      healthy: members.filter((m) => m.healthy).length,
      desired: group.DesiredCapacity,
      members,
    };
  }

  async notify(_n: Notification): Promise<ActionResult> {
    throw new Error(
      `the aws-asg adapter "${this.name}" cannot notify: configure a webhook or exec adapter for notify`,
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

const factory: AdapterFactory = {
  type: 'aws-asg',
  create: (name, options) => new AwsAsgAdapter(name, options),
};
export default factory;
