import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import {
  AutoScalingClient,
  CreateAutoScalingGroupCommand,
  CreateLaunchConfigurationCommand,
} from '@aws-sdk/client-auto-scaling';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import awsAsgFactory, { AwsAsgAdapter } from '../../../actions/adapters/aws-asg.ts';
import { type ActionContext, AdapterDeclined } from '../../../actions/adapters/types.ts';

const endpoint = inject('awsEndpoint');
const reason = inject('serverSkipReasons').moto;
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const region = 'us-east-1';
const ctx: ActionContext = { idempotencyKey: 'alert-1', rule: 'web-crashloop' };

if (!endpoint) process.stderr.write(`aws-asg tests against moto skipped: ${reason}\n`);

describe.skipIf(!endpoint)(
  `aws-asg adapter against moto${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let admin: AutoScalingClient;
    let asg: AwsAsgAdapter;

    /** A fresh group per test (MinSize 2, MaxSize 5, DesiredCapacity 3): moto launches its instances. */
    async function newGroup(): Promise<string> {
      const group = `web-${randomUUID().slice(0, 8)}`;
      await admin.send(
        new CreateLaunchConfigurationCommand({
          LaunchConfigurationName: `${group}-lc`,
          ImageId: 'ami-12c6146b',
          InstanceType: 't3.micro',
        }),
      );
      await admin.send(
        new CreateAutoScalingGroupCommand({
          AutoScalingGroupName: group,
          LaunchConfigurationName: `${group}-lc`,
          MinSize: 2,
          MaxSize: 5,
          DesiredCapacity: 3,
          AvailabilityZones: ['us-east-1a'],
        }),
      );
      return group;
    }

    beforeAll(() => {
      admin = new AutoScalingClient({ region, endpoint: endpoint!, credentials });
      asg = awsAsgFactory.create('asg', {
        region,
        endpoint: endpoint!,
        credentials,
      }) as AwsAsgAdapter;
    });
    afterAll(async () => {
      admin?.destroy();
      await asg?.close();
    });

    it('describes a group, or an instance’s group: size and InService + Healthy instances', async () => {
      const group = await newGroup();
      const health = await asg.describe(group);
      expect(health).toMatchObject({ group, size: 3, healthy: 3, desired: 3 });
      expect(health.members).toHaveLength(3);
      for (const m of health.members!)
        expect(m).toEqual({ id: expect.stringMatching(/^i-/), healthy: true });
      expect(await asg.describe(health.members![1]!.id)).toMatchObject({ group, size: 3 });
    });

    it('kill-and-replace terminates the instance, keeps the desired capacity, and a replacement appears', async () => {
      const group = await newGroup();
      const before = (await asg.describe(group)).members!.map((m) => m.id);
      const victim = before[0]!;
      const result = await asg.killAndReplace(victim, ctx);
      expect(result.detail).toMatchObject({
        instance: victim,
        group,
        via: 'terminate',
        activity: expect.any(String),
      });
      const after = await asg.describe(group);
      const ids = after.members!.map((m) => m.id);
      expect(ids).not.toContain(victim);
      expect(after).toMatchObject({ size: 3, desired: 3, healthy: 3 });
      expect(ids.filter((id) => !before.includes(id))).toHaveLength(1);
      // The terminated instance is no longer in any group.
      await expect(asg.killAndReplace(victim, ctx)).rejects.toThrow(
        `instance ${victim} is in no Auto Scaling group`,
      );
    });

    it('scales within the group’s MinSize/MaxSize and the rule’s min/max', async () => {
      const group = await newGroup();
      expect((await asg.scale(group, { by: 10 }, ctx)).detail).toEqual({
        group,
        from: 3,
        to: 5,
        requested: 13,
        groupBounds: { min: 2, max: 5 },
        changed: true,
      });
      expect(await asg.describe(group)).toMatchObject({ desired: 5, size: 5 });
      expect((await asg.scale(group, { to: 0 }, ctx)).detail).toMatchObject({ from: 5, to: 2 });
      expect(await asg.describe(group)).toMatchObject({ desired: 2, size: 2 });
      expect((await asg.scale(group, { by: 2, max: 3 }, ctx)).detail).toMatchObject({ to: 3 });
      expect((await asg.scale(group, { by: 1, max: 3 }, ctx)).detail).toMatchObject({
        from: 3,
        to: 3,
        changed: false,
      });
      // A rule max below the group's MinSize: the group's floor wins.
      expect((await asg.scale(group, { to: 1, max: 1 }, ctx)).detail).toMatchObject({ to: 2 });
      expect((await asg.describe(group)).desired).toBe(2);
    });

    it('unknown groups and instances are failures with a clear message', async () => {
      await expect(asg.scale('no-such-group', { by: 1 }, ctx)).rejects.toThrow(
        'aws-asg adapter "asg": no Auto Scaling group "no-such-group"',
      );
      await expect(asg.describe('no-such-group')).rejects.toThrow('no Auto Scaling group');
      await expect(asg.killAndReplace('i-00000000000000000', ctx)).rejects.toThrow(
        'instance i-00000000000000000 is in no Auto Scaling group',
      );
    });

    it('admits only an instance of an allowed group, or an existing allowed group', async () => {
      const group = await newGroup();
      const other = await newGroup();
      const bounded = new AwsAsgAdapter('asg', {
        region,
        endpoint: endpoint!,
        credentials,
        groups: [group],
      });
      try {
        const mine = (await asg.describe(group)).members![0]!.id;
        const theirs = (await asg.describe(other)).members![0]!.id;
        await expect(bounded.admit('kill-and-replace', mine)).resolves.toBeUndefined();
        await expect(bounded.admit('scale', group)).resolves.toBeUndefined();
        await expect(
          bounded.admit('kill-and-replace', 'i-00000000000000000'),
        ).rejects.toMatchObject({
          guard: 'inventory',
        });
        await expect(bounded.admit('kill-and-replace', theirs)).rejects.toMatchObject({
          guard: 'target',
        });
        await expect(bounded.killAndReplace(theirs, ctx)).rejects.toThrow(/is not one of/);
        await expect(bounded.admit('scale', other)).rejects.toMatchObject({ guard: 'target' });
        await expect(asg.admit('scale', 'no-such-group')).rejects.toMatchObject({
          guard: 'inventory',
        });
        await expect(asg.admit('kill-and-replace', '-i-0123456789')).rejects.toMatchObject({
          guard: 'target',
        });
        // Nothing was terminated by any of it.
        expect((await asg.describe(other)).members!.map((m) => m.id)).toContain(theirs);
      } finally {
        await bounded.close();
      }
    });
  },
);

/**
 * AWS's "not now" answers cannot be provoked from moto through these calls, so they come
 * from a local server speaking the Auto Scaling query protocol: form-encoded requests,
 * XML responses and AWS's ErrorResponse documents, parsed by the real SDK.
 */
describe('aws-asg adapter: AWS errors through the query protocol', () => {
  const NS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/';
  const answers = new Map<string, { status: number; xml: string }>();
  const actions: Array<Record<string, string>> = [];
  let server: Server;
  let asg: AwsAsgAdapter;

  const ok = (action: string, result: string) => ({
    status: 200,
    xml: `<${action}Response xmlns="${NS}"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`,
  });
  const error = (code: string, message: string) => ({
    status: 400,
    xml: `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
  });

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const params = Object.fromEntries(new URLSearchParams(body));
        actions.push(params);
        const answer = answers.get(params.Action!) ?? error('InvalidAction', 'unexpected');
        res.writeHead(answer.status, { 'content-type': 'text/xml' }).end(answer.xml);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    asg = new AwsAsgAdapter('asg', { region, endpoint: url, credentials, honorCooldown: true });
    answers.set(
      'DescribeAutoScalingInstances',
      ok(
        'DescribeAutoScalingInstances',
        '<AutoScalingInstances><member><InstanceId>i-0123456789abcdef0</InstanceId><AutoScalingGroupName>web</AutoScalingGroupName><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>InService</LifecycleState><HealthStatus>HEALTHY</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member></AutoScalingInstances>',
      ),
    );
    answers.set(
      'DescribeAutoScalingGroups',
      ok(
        'DescribeAutoScalingGroups',
        '<AutoScalingGroups><member><AutoScalingGroupName>web</AutoScalingGroupName><MinSize>1</MinSize><MaxSize>10</MaxSize><DesiredCapacity>3</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>us-east-1a</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType><CreatedTime>2024-01-01T00:00:00Z</CreatedTime><Instances/></member></AutoScalingGroups>',
      ),
    );
  });
  afterAll(async () => {
    await asg?.close();
    await new Promise((r) => server?.close(r));
  });

  it('ScalingActivityInProgress on terminate is a suppression', async () => {
    answers.set(
      'TerminateInstanceInAutoScalingGroup',
      error('ScalingActivityInProgress', 'Scaling activities are in progress: 1 activity'),
    );
    const err = await asg.killAndReplace('i-0123456789abcdef0', ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterDeclined);
    expect(err).toMatchObject({
      reason: 'scaling-activity-in-progress',
      message: expect.stringContaining('Scaling activities are in progress'),
    });
    expect(actions.at(-1)).toMatchObject({
      Action: 'TerminateInstanceInAutoScalingGroup',
      InstanceId: 'i-0123456789abcdef0',
      ShouldDecrementDesiredCapacity: 'false',
    });
  });

  it('ResourceContention on SetDesiredCapacity is a suppression; HonorCooldown is passed on', async () => {
    answers.set(
      'SetDesiredCapacity',
      error('ResourceContention', 'You already have a pending update to an Auto Scaling resource'),
    );
    const err = await asg.scale('web', { by: 1 }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterDeclined);
    expect((err as AdapterDeclined).reason).toBe('resource-contention');
    expect(actions.at(-1)).toMatchObject({
      Action: 'SetDesiredCapacity',
      AutoScalingGroupName: 'web',
      DesiredCapacity: '4',
      HonorCooldown: 'true',
    });
  });

  it('an instance already terminating is not terminated again', async () => {
    const describeInstances = answers.get('DescribeAutoScalingInstances')!;
    answers.set('DescribeAutoScalingInstances', {
      ...describeInstances,
      xml: describeInstances.xml.replace('InService', 'Terminating:Wait'),
    });
    const before = actions.length;
    try {
      expect((await asg.killAndReplace('i-0123456789abcdef0', ctx)).detail).toEqual({
        instance: 'i-0123456789abcdef0',
        group: 'web',
        lifecycle: 'Terminating:Wait',
        via: 'already-terminating',
      });
      expect(actions.slice(before).map((a) => a.Action)).toEqual(['DescribeAutoScalingInstances']);
    } finally {
      answers.set('DescribeAutoScalingInstances', describeInstances);
    }
  });

  it('any other AWS error is a failure carrying its code and message', async () => {
    answers.set(
      'SetDesiredCapacity',
      error(
        'ValidationError',
        'New SetDesiredCapacity value 4 is above max value 3 for the AutoScalingGroup.',
      ),
    );
    const err = await asg.scale('web', { to: 4 }, ctx).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(AdapterDeclined);
    expect((err as Error).message).toBe(
      'aws-asg adapter "asg": SetDesiredCapacity web 4: ValidationError: New SetDesiredCapacity value 4 is above max value 3 for the AutoScalingGroup.',
    );
  });

  it('bad targets, parameters and options are refused before any request', async () => {
    const before = actions.length;
    await expect(asg.killAndReplace('web-1', ctx)).rejects.toThrow(
      '"web-1" is not an EC2 instance id',
    );
    await expect(asg.scale('web', {}, ctx)).rejects.toThrow('scale needs params.to');
    await expect(asg.scale('web', { by: 0.5 }, ctx)).rejects.toThrow(
      'params.by must be a whole number',
    );
    expect(actions.length).toBe(before);
    expect(awsAsgFactory.type).toBe('aws-asg');
    expect(() => awsAsgFactory.create('asg', { region, honourCooldown: true })).toThrow(
      'aws-asg adapter "asg": unknown option "honourCooldown"',
    );
    expect(() => awsAsgFactory.create('asg', { credentials: { accessKeyId: 'x' } })).toThrow(
      'credentials must be { accessKeyId, secretAccessKey, sessionToken? } strings',
    );
  });
});
