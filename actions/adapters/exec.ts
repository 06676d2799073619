import { spawn } from 'node:child_process';
import { childEnv, validateInheritEnv } from './child-env.ts';
import type {
  ActionContext,
  ActionResult,
  Adapter,
  AdapterFactory,
  GroupHealth,
  Notification,
  ScaleParams,
} from './types.ts';

/**
 * Runs a command per decision — no shell; arguments are templates over the decision
 * (`{{ operation }}`, `{{ target }}`, `{{ rule }}`, `{{ params.by }}`...), and the whole
 * decision is in the environment (DROVER_OPERATION, DROVER_TARGET, DROVER_RULE,
 * DROVER_IDEMPOTENCY_KEY, DROVER_PARAMS_JSON, DROVER_NOTIFICATION_JSON). A non-zero exit
 * or a timeout fails the action with the tail of stderr. `describeCommand`, if set,
 * prints the group's health as JSON ({ group, size, healthy }).
 */
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
  }

  killAndReplace(target: string, ctx: ActionContext): Promise<ActionResult> {
    return this.run({
      operation: 'kill-and-replace',
      target,
      rule: ctx.rule,
      idempotencyKey: ctx.idempotencyKey,
    });
  }

  scale(target: string, params: ScaleParams, ctx: ActionContext): Promise<ActionResult> {
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
      (this.options.describeArgs ?? []).map((a) => fill(a, { target })),
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
    const args = (this.options.args ?? []).map((a) => fill(a, vars));
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

function fill(template: string, vars: Record<string, unknown>): string {
  return template.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, path: string) => {
    let v: unknown = vars;
    for (const part of path.split('.'))
      v = v === null || typeof v !== 'object' ? undefined : (v as Record<string, unknown>)[part];
    if (v === undefined) throw new Error(`"${path}" is not set for this decision`);
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
}

const factory: AdapterFactory = {
  type: 'exec',
  create: (name, options) => new ExecAdapter(name, options as unknown as ExecOptions),
};
export default factory;
