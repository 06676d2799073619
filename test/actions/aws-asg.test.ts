import { randomUUID } from 'node:crypto';
import {
  AutoScalingClient,
  CreateAutoScalingGroupCommand,
  CreateLaunchConfigurationCommand,
} from '@aws-sdk/client-auto-scaling';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { AwsAsgAdapter } from '../../actions/index.ts';

const endpoint = inject('awsEndpoint');
const reason = inject('serverSkipReasons').moto;
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

describe.skipIf(!endpoint)(
  `aws-asg adapter against moto${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    const group = `web-${randomUUID().slice(0, 8)}`;
    let asg: AwsAsgAdapter;

    beforeAll(async () => {
      const client = new AutoScalingClient({
        region: 'us-east-1',
        endpoint: endpoint!,
        credentials,
      });
      await client.send(
        new CreateLaunchConfigurationCommand({
          LaunchConfigurationName: `${group}-lc`,
          ImageId: 'ami-12c6146b',
          InstanceType: 't3.micro',
        }),
      );
      await client.send(
        new CreateAutoScalingGroupCommand({
          AutoScalingGroupName: group,
          LaunchConfigurationName: `${group}-lc`,
          MinSize: 2,
          MaxSize: 5,
          DesiredCapacity: 3,
          AvailabilityZones: ['us-east-1a'],
        }),
      );
      client.destroy();
      asg = new AwsAsgAdapter('asg', { region: 'us-east-1', endpoint: endpoint!, credentials });
    });

    it('describes the group: size and InService + Healthy instances', async () => {
      const health = await asg.describe(group);
      expect(health).toMatchObject({ group, size: 3, healthy: 3, desired: 3 });
      expect(await asg.describe(health.members![0]!.id)).toMatchObject({ group });
    });

    it('kill-and-replace terminates the instance without decrementing the desired capacity', async () => {
      const before = await asg.describe(group);
      const victim = before.members![0]!.id;
      const result = await asg.killAndReplace(victim);
      expect(result.detail).toMatchObject({ instance: victim });
      const after = await asg.describe(group);
      expect(after.members!.map((m) => m.id)).not.toContain(victim);
      expect(after).toMatchObject({ size: 3, desired: 3 });
    });

    it('scales within the group bounds and the rule bounds', async () => {
      expect((await asg.scale(group, { by: 10 })).detail).toMatchObject({
        from: 3,
        to: 5,
        requested: 13,
      });
      expect((await asg.describe(group)).desired).toBe(5);
      expect((await asg.scale(group, { to: 0 })).detail).toMatchObject({ to: 2 });
      expect((await asg.scale(group, { by: 1, max: 2 })).detail).toMatchObject({ to: 2 });
    });

    it('reports AWS errors: an unknown group or instance', async () => {
      await expect(asg.scale('no-such-group', { by: 1 })).rejects.toThrow(
        /no auto scaling group "no-such-group"/,
      );
      await expect(asg.killAndReplace('i-00000000000000000')).rejects.toThrow();
    });
  },
);
