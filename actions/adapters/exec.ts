/**
 * Runs a command per decision — no shell; arguments are templates over the decision
 * (`{{ operation }}`, `{{ target }}`, `{{ rule }}`, `{{ params.by }}`...), and the whole
 * decision is in the environment (DROVER_OPERATION, DROVER_TARGET, DROVER_RULE,
 * DROVER_IDEMPOTENCY_KEY, DROVER_PARAMS_JSON, DROVER_NOTIFICATION_JSON). A non-zero exit
 * or a timeout fails the action with the tail of stderr. `describeCommand`, if set,
 * prints the group's health as JSON ({ group, size, healthy, members? }).
 *
 * An event value is never an option and never shell text: a target is EXEC_TARGET's
 * characters only; an argument rendered to start with `-` is refused unless its
 * template text starts with `-` itself (write `--` before values: `[--, "{{ target }}"]`);
 * and a configuration that runs a shell (`sh -c SCRIPT`) may not put a template in the
 * script: values go after it, as `$1`..., or are read from DROVER_TARGET.
 */

import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { childEnv, validateInheritEnv } from './child-env.ts';
import { CONTROL, expectTarget, shown } from './target-checks.ts';
import {
  type ActionContext,
  type ActionResult,
  type Adapter,
  type AdapterFactory,
  type GroupHealth,
  type Notification,
  type ScaleParams,
  type TargetOperation,
  TargetRefused,
} from './types.ts';

export interface ExecOptions {
  command: string;
  args?: string[];
  describeCommand?: string;
  describeArgs?: string[];
  /** Added to the child's minimal environment (see child-env.ts). */
  env?: Record<string, string>;
  /** Names of Drover's environment variables the child also gets (never Drover's own secrets). */
  inheritEnv?: string[];
  cwd?: string;
  timeoutMs?: number;
}

/**
 * What an exec target may be: a host name, an instance id, `service:replica`, an
 * address. No spaces, quotes or shell metacharacters (an `ssh` passes its remote
 * arguments to a shell), no leading `-`; `/` only as the rule's template put it there.
 */
const EXEC_TARGET = /^[A-Za-z0-9_.:@+=,%][A-Za-z0-9_.:@+=,%/-]{0,252}$/;
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'fish', 'csh', 'tcsh']);

/**
 * For a command that is a shell, or that runs one (`env bash -c`, `sudo sh -c`), the
 * position of its script: the argument after `-c`, or after a flag group holding `c`
 * (`-ec`); -1 for anything else.
 */
function scriptIndex(command: string, args: string[]): number {
  const shell = SHELLS.has(basename(command)) ? -1 : args.findIndex((a) => SHELLS.has(basename(a)));
  if (shell === -1 && !SHELLS.has(basename(command))) return -1;
  const flag = args.findIndex((a, i) => i > shell && /^-[a-zA-Z]*c[a-zA-Z]*$/.test(a));
  return flag === -1 ? -1 : flag + 1;
}

/** Refuses, at start-up, a template spliced into a shell's script text. */
function checkNoShellSplice(where: string, command: string, args: string[] = []): void {
  if (!Array.isArray(args)) throw new Error(`${where}: args must be a list`);
  const script = scriptIndex(command, args);
  for (let i = 0; i <= script && i < args.length; i++)
    if (/\{\{/.test(args[i]!))
      throw new Error(
        `${where}: a template in ${command}'s script or options (${JSON.stringify(args[i])}) would make a value shell text; pass it after the script as a positional argument ($1) or read DROVER_TARGET`,
      );
}

interface Decision {
  operation: string;
  target: string;
  rule: string;
  idempotencyKey: string;
  params?: ScaleParams;
  notification?: Notification;
}

export class ExecAdapter implements Adapter {
  readonly type = 'exec';

  constructor(
    readonly name: string,
    private readonly options: ExecOptions,
  ) {
    if (!options.command) throw new Error(`exec adapter ${name} needs a command`);
    validateInheritEnv(`exec adapter ${name}`, options.inheritEnv);
    checkNoShellSplice(`exec adapter ${name}`, options.command, options.args);
    if (options.describeCommand)
      checkNoShellSplice(
        `exec adapter ${name} describe`,
        options.describeCommand,
        options.describeArgs,
      );
  }

  /**
   * The target's form (EXEC_TARGET), then, with a describeCommand, the inventory: the
   * command must succeed for the target and, if it lists members, name it among them
   * (or as the group) for kill-and-replace.
   */
  async admit(operation: TargetOperation, target: string): Promise<void> {
    expectTarget(target, EXEC_TARGET, 'an exec target (letters, digits, . _ : @ + = , % - /)');
    if (!this.options.describeCommand) return;
    let health: GroupHealth;
    try {
      health = await this.describe(target);
    } catch (err) {
      throw new TargetRefused(
        `${this.options.describeCommand} does not know ${shown(target)}: ${(err as Error).message}`,
        'inventory',
      );
    }
    if (
      operation === 'kill-and-replace' &&
      health.members &&
      health.group !== target &&
      !health.members.some((m) => m.id === target)
    )
      throw new TargetRefused(
        `${shown(target)} is not a member of ${shown(String(health.group))}`,
        'inventory',
      );
  }

  async killAndReplace(target: string, ctx: ActionContext): Promise<ActionResult> {
    expectTarget(target, EXEC_TARGET, 'an exec target');
    return this.run({
      operation: 'kill-and-replace',
      target,
      rule: ctx.rule,
      idempotencyKey: ctx.idempotencyKey,
    });
  }

  async scale(target: string, params: ScaleParams, ctx: ActionContext): Promise<ActionResult> {
    expectTarget(target, EXEC_TARGET, 'an exec target');
    return this.run({
      operation: 'scale',
      target,
      params,
      rule: ctx.rule,
      idempotencyKey: ctx.idempotencyKey,
    });
  }

  notify(notification: Notification, ctx: ActionContext): Promise<ActionResult> {
    return this.run({
      operation: 'notify',
      target: notification.title,
      notification,
      rule: ctx.rule,
      idempotencyKey: ctx.idempotencyKey,
    });
  }

  async describe(target: string): Promise<GroupHealth> {
    if (!this.options.describeCommand)
      throw new Error(`the exec adapter ${this.name} has no describeCommand`);
    const { stdout } = await this.spawn(
      this.options.describeCommand,
      (this.options.describeArgs ?? []).map((a, i) => fill(a, { target }, i)),
      { DROVER_TARGET: target },
    );
    const health = JSON.parse(stdout) as GroupHealth;
    if (typeof health.size !== 'number' || typeof health.healthy !== 'number')
      throw new Error(`describeCommand printed no { size, healthy }: ${stdout.slice(0, 200)}`);
    return { ...health, group: health.group ?? target };
  }

  private async run(d: Decision): Promise<ActionResult> {
    const vars: Record<string, unknown> = {
      operation: d.operation,
      target: d.target,
      rule: d.rule,
      idempotency_key: d.idempotencyKey,
      params: d.params ?? {},
    };
    const args = (this.options.args ?? []).map((a, i) => fill(a, vars, i));
    const started = Date.now();
    const { stdout, code } = await this.spawn(this.options.command, args, {
      DROVER_OPERATION: d.operation,
      DROVER_TARGET: d.target,
      DROVER_RULE: d.rule,
      DROVER_IDEMPOTENCY_KEY: d.idempotencyKey,
      DROVER_PARAMS_JSON: JSON.stringify(d.params ?? {}),
      ...(d.notification && { DROVER_NOTIFICATION_JSON: JSON.stringify(d.notification) }),
    });
    return {
      detail: {
        command: this.options.command,
        args,
        exitCode: code,
        stdout: stdout.slice(-2_000),
        durationMs: Date.now() - started,
      },
    };
  }

  private spawn(
    command: string,
    args: string[],
    env: Record<string, string>,
  ): Promise<{ stdout: string; code: number }> {
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, {
        cwd: this.options.cwd,
        env: childEnv(this.options.env, env, this.options.inheritEnv),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timeoutMs = this.options.timeoutMs ?? 30_000;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`${command} could not start: ${err.message}`));
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        if (timedOut)
          reject(new Error(`${command} timed out after ${timeoutMs} ms and was killed`));
        else if (code !== 0)
          reject(new Error(`${command} exited with ${code}: ${stderr.trim().slice(-500)}`));
        else resolve({ stdout, code: 0 });
      });
    });
  }
}

/**
 * Renders argument `index`. A value never makes an option (the argument may start with
 * `-` only where its template text does) and never carries a control character (a NUL
 * would cut the argument short, a newline start a new command in a script).
 */
function fill(template: string, vars: Record<string, unknown>, index: number): string {
  const out = template.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, path: string) => {
    let v: unknown = vars;
    for (const part of path.split('.'))
      v = v === null || typeof v !== 'object' ? undefined : (v as Record<string, unknown>)[part];
    if (v === undefined) throw new Error(`"${path}" is not set for this decision`);
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    if (CONTROL.test(text))
      throw new TargetRefused(
        `argument ${index} would carry a control character or line break from "${path}" (${shown(text)})`,
        'target',
      );
    return text;
  });
  if (out.startsWith('-') && !template.startsWith('-'))
    throw new TargetRefused(
      `argument ${index} would be ${shown(out)}, an option written by a value; put "--" before value arguments`,
      'target',
    );
  return out;
}

const factory: AdapterFactory = {
  type: 'exec',
  create: (name, options) => new ExecAdapter(name, options as unknown as ExecOptions),
};
export default factory;
