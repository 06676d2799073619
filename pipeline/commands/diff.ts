import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Adapter, type Decision, openActionStore, Remediator } from '../../actions/index.ts';
import type { GroupTimers } from '../../actions/notify-groups.ts';
import { diffAlerts } from '../../rules/diff.ts';
import {
  type Alert,
  type BacktestSummary,
  backtestSets,
  type Diagnostic,
  formatDiagnostic,
  loadRules,
  parseDuration,
  type RuleSpec,
  warmupReport,
} from '../../rules/index.ts';
import { ConfigError, type DroverConfig, loadConfig } from '../config.ts';
import { progressBar, time } from './backtest.ts';
import { openSource, warmupLines } from './backtest-source.ts';
import { EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, UsageError } from './common.ts';
import {
  type ActionRow,
  type DiffReport,
  differs,
  renderJson,
  renderMarkdown,
  renderText,
  type RuleReport,
} from './diff-render.ts';
import { DIFF_OPTIONS } from './options.ts';

export async function diffCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: DIFF_OPTIONS, allowPositionals: false });
  if (!values.base) throw new UsageError('--base is required (a git ref or a folder)');
  const format = values.format;
  if (format !== 'text' && format !== 'json' && format !== 'markdown')
    throw new UsageError('--format is text, json or markdown');
  const from = values.from === undefined ? undefined : time('--from', values.from);
  const to = values.to === undefined ? undefined : time('--to', values.to);
  let lateness: number | undefined;
  if (values.lateness !== undefined) {
    try {
      lateness = parseDuration(values.lateness);
    } catch (err) {
      throw new UsageError(`--lateness: ${(err as Error).message}`);
    }
  }
  let config: DroverConfig | undefined;
  if (values.config) {
    try {
      config = loadConfig(values.config);
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(err.message);
      throw err;
    }
  }
  const headDir = values.head ?? config?.rules.paths[0] ?? 'rules';
  if (!isDir(headDir)) throw new UsageError(`--head: ${headDir} is not a folder`);

  const base = isDir(values.base)
    ? { dir: values.base, label: values.base, cleanup: () => {}, rename: (f: string) => f }
    : readRef(values.base, headDir);
  try {
    const baseSet = await load(base.dir, base.rename);
    const headSet = await load(headDir, (f) => f);
    if (!baseSet || !headSet) {
      process.stderr.write(
        'drover rules diff: the rules have errors; fix them first (drover rules lint)\n',
      );
      return EXIT_USAGE;
    }
    // Warm-up for the longer needs of either side; the store sources take the URL from
    // --config or the environment as drover serve does.
    const source = await openSource(values, { from, to }, [...baseSet, ...headSet], config);
    let progress: ReturnType<typeof progressBar> | undefined;
    let b: BacktestSummary;
    let h: BacktestSummary;
    try {
      [b, h] = (await backtestSets(source.input, {
        sets: [baseSet, headSet],
        from,
        to,
        allowedLatenessMs: lateness,
        onBadLine: (line, error) => {
          progress?.clear();
          process.stderr.write(`${source.label}:${line}: skipped: ${error}\n`);
        },
        onProgress: process.stderr.isTTY
          ? (read) => {
              if (!progress && source.total) progress = progressBar(source.total, source.unit);
              progress?.update(read);
            }
          : undefined,
      })) as [BacktestSummary, BacktestSummary];
    } finally {
      progress?.clear();
      await source.close();
    }
    process.stderr.write(warmupLines(warmupReport(headSet, from, b.first), from));
    const report = await buildReport(
      { label: base.label, rules: baseSet, alerts: b.alerts },
      // As given, or relative to here: a PR comment shows no runner's home folder.
      { label: relative(process.cwd(), headDir) || '.', rules: headSet, alerts: h.alerts },
      config,
    );
    report.events = b.events;
    report.first = b.first;
    report.last = b.last;
    const render =
      format === 'json' ? renderJson : format === 'markdown' ? renderMarkdown : renderText;
    process.stdout.write(render(report));
    const changed = report.rules.filter(differs).length;
    process.stderr.write(
      `${b.events} events, ${b.badLines} bad lines; base ${b.alerts.length} alerts, head ${h.alerts.length} alerts; ${changed} rules differ\n`,
    );
    return changed > 0 ? EXIT_FINDINGS : EXIT_OK;
  } finally {
    base.cleanup();
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

async function load(
  dir: string,
  rename: (file: string) => string,
): Promise<RuleSpec[] | undefined> {
  const { rules, diagnostics } = await loadRules([dir]);
  const errors = diagnostics.filter((d: Diagnostic) => d.severity === 'error');
  for (const d of errors)
    process.stderr.write(`${formatDiagnostic({ ...d, file: rename(d.file) })}\n`);
  return errors.length > 0 ? undefined : rules;
}

/**
 * The rule files of the head folder's path as they are at a git ref, read with
 * `git show REF:path` (no checkout) into a temporary folder. Files added or removed
 * between the ref and the working tree are simply there or not.
 */
export function readRef(
  ref: string,
  headDir: string,
): { dir: string; label: string; cleanup: () => void; rename: (f: string) => string } {
  // The ref reaches git as an argument: never as an option.
  // eslint-disable-next-line no-control-regex
  if (ref.startsWith('-') || /[\s\u0000-\u001f]/.test(ref))
    throw new UsageError(`--base: "${ref}" is neither a folder nor a git ref`);
  const git = (args: string[]) =>
    execFileSync('git', ['-C', headDir, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  let commit: string;
  let prefix: string;
  try {
    prefix = git(['rev-parse', '--show-prefix']).toString().trim();
  } catch {
    throw new UsageError(
      `--base: "${ref}" is not a folder, and ${headDir} is not in a git repository`,
    );
  }
  try {
    commit = git(['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`])
      .toString()
      .trim();
  } catch {
    throw new UsageError(`--base: "${ref}" is neither a folder nor a git commit`);
  }
  const names = git(['ls-tree', '-r', '-z', '--full-name', '--name-only', commit, '--', '.'])
    .toString()
    .split('\0')
    .filter((n) => /\.ya?ml$/i.test(n) && n.startsWith(prefix));
  const dir = mkdtempSync(join(tmpdir(), 'drover-diff-'));
  try {
    for (const name of names) {
      const rel = name.slice(prefix.length);
      if (rel.split('/').some((s) => s === '' || s === '.' || s === '..')) continue;
      const path = join(dir, rel);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, git(['show', `${commit}:${name}`]));
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const root = resolve(dir);
  return {
    dir,
    label: ref,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
    // Problems in the base's files point at REF:path, not the temporary copy.
    rename: (f) => {
      const abs = resolve(f);
      return abs.startsWith(`${root}/`) ? `${ref}:${prefix}${abs.slice(root.length + 1)}` : f;
    },
  };
}

export async function buildReport(
  base: { label: string; rules: RuleSpec[]; alerts: Alert[] },
  head: { label: string; rules: RuleSpec[]; alerts: Alert[] },
  config: DroverConfig | undefined,
): Promise<DiffReport> {
  const diffs = diffAlerts(base, head);
  const baseDecisions = await simulate(base.alerts, config);
  const headDecisions = await simulate(head.alerts, config);
  // rule → day|action → outcome counts; bounded by the decisions, at most a few per alert.
  const rows = new Map<string, Map<string, ActionRow>>();
  const count = (side: 'base' | 'head', decisions: Decision[]) => {
    for (const d of decisions) {
      let byRule = rows.get(d.rule);
      if (!byRule) rows.set(d.rule, (byRule = new Map<string, ActionRow>()));
      const day = new Date(d.at).toISOString().slice(0, 10);
      const action = `${d.adapter}:${d.operation}`;
      const id = `${day}\u0000${action}`;
      let row = byRule.get(id);
      if (!row) byRule.set(id, (row = { day, action, base: {}, head: {} }));
      const outcome =
        d.decision === 'dry-run'
          ? 'would run'
          : d.decision === 'suppressed' && d.guard === 'group'
            ? 'grouped' // into a notification, counted again when the group is sent
            : d.decision === 'suppressed'
              ? `suppressed by ${d.guard ?? 'a guard'}`
              : d.decision;
      row[side][outcome] = (row[side][outcome] ?? 0) + 1;
    }
  };
  count('base', baseDecisions);
  count('head', headDecisions);
  const same = (a: Record<string, number>, b: Record<string, number>) => {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
  };
  const rules: RuleReport[] = diffs.map((d) => {
    const actions = [...(rows.get(d.rule)?.values() ?? [])].sort((a, b) =>
      a.day === b.day ? (a.action < b.action ? -1 : 1) : a.day < b.day ? -1 : 1,
    );
    return { ...d, actions, actionsChanged: actions.some((a) => !same(a.base, a.head)) };
  });
  return {
    base: base.label,
    head: head.label,
    events: 0,
    first: undefined,
    last: undefined,
    rules,
  };
}

/**
 * Timers of notification groups in event time: they fire when the simulation's clock
 * passes them, not on the wall clock. At most one per notification group (maxNotifyGroups).
 */
class EventTimers implements GroupTimers {
  now = 0;
  private queue: Array<{ at: number; seq: number; fn: () => void }> = [];
  private seq = 0;
  setTimeout(fn: () => void, ms: number): unknown {
    const t = { at: this.now + ms, seq: this.seq++, fn };
    this.queue.push(t);
    return t;
  }
  clearTimeout(handle: unknown): void {
    this.queue = this.queue.filter((t) => t !== handle);
  }
  /** The earliest timer due at or before `t`, removed from the queue. */
  next(t: number): (() => void) | undefined {
    let best: { at: number; seq: number; fn: () => void } | undefined;
    for (const q of this.queue)
      if (q.at <= t && (!best || q.at < best.at || (q.at === best.at && q.seq < best.seq)))
        best = q;
    if (!best) return undefined;
    const timer = best;
    this.queue = this.queue.filter((q) => q !== timer);
    this.now = Math.max(this.now, timer.at);
    return timer.fn;
  }
}

/**
 * A stand-in for a configured adapter: the remediator runs in dry-run, so it never acts.
 * A diff has no live group health: every target is taken to be one healthy member of a
 * large, fully healthy group (SIMULATED_GROUP_SIZE), so the min-healthy floor and the
 * blast radius pass unless they are absolute (100%); docs/rules.md says so.
 */
function simulated(name: string, type: string): Adapter {
  const never = () => Promise.reject(new Error('drover rules diff never acts'));
  return {
    name,
    type,
    killAndReplace: never,
    scale: never,
    notify: never,
    describe: (target) =>
      Promise.resolve({
        group: `${name}:${target}`,
        size: SIMULATED_GROUP_SIZE,
        healthy: SIMULATED_GROUP_SIZE,
      }),
  };
}

export const SIMULATED_GROUP_SIZE = 1_000_000;

/** Every adapter name is configured when no --config names them. */
class AnyAdapters extends Map<string, Adapter> {
  override get(name: string): Adapter {
    return super.get(name) ?? simulated(name, 'simulated');
  }
  override has(): boolean {
    return true;
  }
}

/**
 * The alerts through the real remediator in dry-run: policy, action sets and every
 * guard rail of the configuration, over a fresh in-memory journal, its clock driven by
 * the alerts' event times; the adapters are stand-ins that never act.
 */
export async function simulate(
  alerts: Alert[],
  config: DroverConfig | undefined,
): Promise<Decision[]> {
  const adapters: Map<string, Adapter> = config ? new Map<string, Adapter>() : new AnyAdapters();
  for (const [name, a] of Object.entries(config?.adapters ?? {}))
    adapters.set(name, simulated(name, a.type));
  const timers = new EventTimers();
  const store = openActionStore(':memory:');
  const decisions: Decision[] = [];
  try {
    const remediator = new Remediator({
      store,
      adapters,
      actionSets: config?.actionSets,
      guards: { ...config?.guards, dryRun: true },
      ruleGuards: config?.ruleGuards,
      clock: () => timers.now,
      groupTimers: timers,
    });
    remediator.on('decision', (d: Decision) => decisions.push(d));
    const ordered = alerts
      .map((alert) => ({ alert, t: Date.parse(alert.at) }))
      .sort((a, b) => a.t - b.t);
    const runTimers = async (t: number) => {
      for (let fn = timers.next(t); fn; fn = timers.next(t)) {
        fn();
        await remediator.settled();
      }
    };
    for (const { alert, t } of ordered) {
      await runTimers(t);
      timers.now = Math.max(timers.now, t);
      await remediator.handle(alert);
    }
    await runTimers(Number.POSITIVE_INFINITY);
    await remediator.close();
  } finally {
    store.close();
  }
  return decisions;
}
