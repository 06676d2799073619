import { parseArgs } from 'node:util';
import { render as renderTarget } from '../../actions/index.ts';
import { toEpochMs } from '../../ingest/model/index.ts';
import {
  type Alert,
  backtest,
  type StateChange,
  formatDiagnostic,
  loadRules,
  parseDuration,
  warmupReport,
} from '../../rules/index.ts';
import { openSource, warmupJson, warmupLines } from './backtest-source.ts';
import { EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, UsageError } from './common.ts';
import { BACKTEST_OPTIONS } from './options.ts';

export async function backtestCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: BACKTEST_OPTIONS,
    allowPositionals: false,
  });
  if (!values.rules || values.rules.length === 0) throw new UsageError('--rules is required');
  const format = values.format;
  if (format !== 'text' && format !== 'json' && format !== 'markdown') {
    throw new UsageError('--format is text, json or markdown');
  }
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

  const { rules, diagnostics } = await loadRules(values.rules);
  const errors = diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    for (const d of errors) process.stderr.write(`${formatDiagnostic(d)}\n`);
    process.stderr.write(
      'drover backtest: the rules have errors; fix them first (drover rules lint)\n',
    );
    return EXIT_USAGE;
  }

  const source = await openSource(values, { from, to }, rules);
  const tty = process.stderr.isTTY;
  let progress: ReturnType<typeof progressBar> | undefined;
  const out = process.stdout;
  if (format === 'markdown') {
    out.write('| at | rule | type | key | figures | actions |\n|---|---|---|---|---|---|\n');
  }
  let summary: Awaited<ReturnType<typeof backtest>>;
  try {
    summary = await backtest(source.input, {
      rules,
      from,
      to,
      allowedLatenessMs: lateness,
      onAlert: (alert) => out.write(render(alert, format)),
      onState: values.states ? (change) => out.write(renderState(change, format)) : undefined,
      onBadLine: (line, error) => {
        progress?.clear();
        process.stderr.write(`${source.label}:${line}: skipped: ${error}\n`);
      },
      onProgress: tty
        ? (read) => {
            // A store's total is known once its first page is read.
            if (!progress && source.total) progress = progressBar(source.total, source.unit);
            progress?.update(read);
          }
        : undefined,
    });
  } finally {
    progress?.clear();
    await source.close();
  }
  const warmup = warmupReport(rules, from, summary.first);
  if (format !== 'json') process.stderr.write(warmupLines(warmup, from));
  if (source.method) process.stderr.write(`${source.label}: read with ${source.method}\n`);
  if (format === 'markdown' && summary.alerts.length === 0)
    out.write('| | _no alerts_ | | | | |\n');
  const span =
    summary.first === undefined
      ? 'no events'
      : `${new Date(summary.first).toISOString()} .. ${new Date(summary.last!).toISOString()}`;
  process.stderr.write(
    `${summary.events} events (${span}), ${summary.alerts.length} alerts, ${summary.badLines} bad lines, ${summary.lateEvents} late events, ${summary.states.resolved} resolved, ${summary.states.pending} pending, ${summary.states.inactive} inactive\n`,
  );
  if (format === 'json') {
    // Standard output stays one alert per line; the summary is one JSON line on stderr.
    const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
    process.stderr.write(
      `${JSON.stringify({
        summary: {
          events: summary.events,
          alerts: summary.alerts.length,
          badLines: summary.badLines,
          lateEvents: summary.lateEvents,
          states: summary.states,
          first: iso(summary.first),
          last: iso(summary.last),
          ...(source.readFrom !== undefined && { readFrom: iso(source.readFrom) }),
          warmup: warmupJson(warmup),
        },
      })}\n`,
    );
  }
  return summary.alerts.length > 0 ? EXIT_FINDINGS : EXIT_OK;
}

export function time(flag: string, v: string): number {
  const ms = toEpochMs(v);
  if (ms === undefined)
    throw new UsageError(`${flag}: "${v}" is not an ISO 8601 time or epoch milliseconds`);
  return ms;
}

export function keyText(key: Record<string, unknown>): string {
  const parts = Object.entries(key).map(
    ([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`,
  );
  return parts.length > 0 ? parts.join(',') : '-';
}

function figuresText(figures: Record<string, unknown>): string {
  return Object.entries(figures)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
}

/** The actions the alert would have triggered, targets rendered as the remediator would. */
function actionsText(alert: Alert): string {
  return alert.actions
    .map((a) => {
      if (typeof a === 'string') return `action set ${a}`;
      let target = '';
      if (a.target !== undefined) {
        try {
          target = ` ${renderTarget(a.target, alert)}`;
        } catch (err) {
          target = ` <${(err as Error).message}>`;
        }
      }
      const params = a.params ? ` ${JSON.stringify(a.params)}` : '';
      return `${a.adapter}:${a.operation}${target}${params}${a.when ? ' (if its when holds)' : ''}`;
    })
    .join('; ');
}

function render(alert: Alert, format: 'text' | 'json' | 'markdown'): string {
  if (format === 'json') return `${JSON.stringify(alert)}\n`;
  const actions = actionsText(alert);
  if (format === 'markdown') {
    const cell = (s: string) => s.replace(/\|/g, '\\|');
    return `| ${alert.at} | ${cell(alert.rule)} | ${alert.type} | ${cell(keyText(alert.key))} | ${cell(figuresText(alert.figures))} | ${cell(actions || '-')} |\n`;
  }
  const line = `${alert.at}  ${alert.rule}  ${alert.type}  ${keyText(alert.key)}  ${figuresText(alert.figures)}\n`;
  return actions ? `${line}    would run: ${actions}\n` : line;
}

/** A state change: in json its own line, told from an alert by its `state` field. */
function renderState(change: StateChange, format: 'text' | 'json' | 'markdown'): string {
  if (format === 'json') return `${JSON.stringify(change)}\n`;
  const closes = change.alert === undefined ? '' : ` (closes alert ${change.alert})`;
  if (format === 'markdown') {
    const cell = (s: string) => s.replace(/\|/g, '\\|');
    return `| ${change.at} | ${cell(change.rule)} | ${change.type} | ${cell(keyText(change.key))} | ${change.state}${closes} | - |\n`;
  }
  return `${change.at}  ${change.rule}  ${change.type}  ${keyText(change.key)}  ${change.state}${closes}\n`;
}

export function progressBar(total: number, unit: 'bytes' | 'events' = 'bytes') {
  const width = 30;
  let last = -1;
  return {
    update(bytes: number) {
      const pct = Math.min(100, Math.floor((bytes / total) * 100));
      if (pct === last) return;
      last = pct;
      const filled = Math.round((pct / 100) * width);
      const mib = (n: number) => (n / 1048576).toFixed(1);
      const figures =
        unit === 'bytes' ? `${mib(bytes)}/${mib(total)} MiB` : `${bytes}/${total} events`;
      process.stderr.write(
        `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}% ${figures}`,
      );
    },
    clear() {
      if (last >= 0) process.stderr.write('\r\x1b[K');
      last = -1;
    },
  };
}
