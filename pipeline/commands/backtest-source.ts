/**
 * Where `drover backtest` and `drover rules diff` read their events: NDJSON (`--data`),
 * Drover's Elasticsearch indices (`--source elasticsearch`), or the retained Kafka bus
 * (`--source kafka`). The stores are read from `--from` minus the warm-up the rules need
 * (`--warmup` overrides it), so state at `--from` is what a run over all the history
 * would hold; the warm-up each rule got is reported (warmupLines, warmupJson).
 */
import type { BacktestInput, RuleSpec, WarmupEntry } from '../../rules/index.ts';
import { defaultWarmupMs, openData, parseDuration } from '../../rules/index.ts';
import { ConfigError, type DroverConfig, loadConfig } from '../config.ts';
import { redact } from '../redact.ts';
import { UsageError } from './common.ts';

export interface SourceFlags {
  source?: string;
  data?: string;
  index?: string;
  topic?: string;
  warmup?: string;
  config?: string;
}

export interface OpenedSource {
  input: BacktestInput;
  /** Names the source in messages (`file.ndjson`, `elasticsearch drover-events*`). */
  label: string;
  /** Where the read starts (the stores: from − warm-up). */
  readFrom?: number;
  /** For the progress bar: the file's bytes, or the events in range. */
  total?: number;
  unit: 'bytes' | 'events';
  /** How the store is read, for the summary (`point in time`, `scroll`). */
  method?: string;
  close(): Promise<void>;
}

/**
 * Page size of the store sources: DROVER_BACKTEST_PAGE_SIZE, meant for tests (a range of
 * a few events spread over several pages); 1,000 otherwise.
 */
function pageSize(): number | undefined {
  const v = process.env.DROVER_BACKTEST_PAGE_SIZE;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10_000)
    throw new UsageError('DROVER_BACKTEST_PAGE_SIZE is an integer from 1 to 10000');
  return n;
}

export function loadConfigFlag(path: string | undefined): DroverConfig {
  try {
    return loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

export async function openSource(
  flags: SourceFlags,
  range: { from?: number; to?: number },
  rules: RuleSpec[],
  config?: DroverConfig,
): Promise<OpenedSource> {
  const source = flags.source ?? (flags.data !== undefined ? 'file' : undefined);
  if (source === undefined)
    throw new UsageError(
      '--data is required (a file, or - for standard input), or --source elasticsearch|kafka',
    );
  if (source === 'file') {
    if (flags.data === undefined) throw new UsageError('--source file needs --data');
    for (const flag of ['index', 'topic', 'warmup'] as const)
      if (flags[flag] !== undefined)
        throw new UsageError(
          `--${flag} is for --source elasticsearch|kafka (a file's events before --from warm state)`,
        );
    let data: ReturnType<typeof openData>;
    try {
      data = openData(flags.data);
    } catch (err) {
      throw new UsageError(`--data: ${(err as Error).message}`);
    }
    return {
      input: data.stream,
      label: flags.data,
      total: data.size,
      unit: 'bytes',
      close: async () => {},
    };
  }
  if (source !== 'elasticsearch' && source !== 'kafka')
    throw new UsageError(`--source is file, elasticsearch or kafka, not "${source}"`);
  if (flags.data !== undefined) throw new UsageError(`--data is for files, not --source ${source}`);
  if (range.from === undefined)
    throw new UsageError(`--source ${source} needs --from (and reads its warm-up before it)`);
  let warmup = defaultWarmupMs(rules);
  if (flags.warmup !== undefined) {
    try {
      warmup = parseDuration(flags.warmup);
    } catch (err) {
      throw new UsageError(`--warmup: ${(err as Error).message}`);
    }
  }
  const readFrom = range.from - warmup;
  config ??= loadConfigFlag(flags.config);
  if (source === 'elasticsearch') {
    if (flags.topic !== undefined) throw new UsageError('--topic is for --source kafka');
    return openElasticsearch(flags, config, readFrom, range.to);
  }
  if (flags.index !== undefined) throw new UsageError('--index is for --source elasticsearch');
  return openKafka(flags, config, readFrom);
}

async function openKafka(
  flags: SourceFlags,
  config: DroverConfig,
  readFrom: number,
): Promise<OpenedSource> {
  if (config.bus.kind !== 'kafka')
    throw new UsageError('--source kafka needs brokers: KAFKA_BROKERS, or bus.brokers in --config');
  if (!flags.topic)
    throw new UsageError(
      `--source kafka needs --topic (${config.bus.topicPrefix}logs, ${config.bus.topicPrefix}metrics, or both, comma-separated)`,
    );
  const topics = flags.topic.split(',').map((t) => t.trim());
  // Kafka's own rule for topic names.
  for (const t of topics)
    if (!/^[A-Za-z0-9._-]{1,249}$/.test(t))
      throw new UsageError(`--topic: "${t}" is not a Kafka topic name`);
  const { KafkaScan, KafkaScanError } = await import('../../ingest/bus/kafka-scan.ts');
  const scan = new KafkaScan({
    brokers: config.bus.brokers,
    topics,
    from: readFrom,
    maxFutureSkewMs: config.rules.maxFutureSkewMs,
    pageSize: pageSize(),
  });
  try {
    await scan.open();
  } catch (err) {
    await scan.close();
    if (err instanceof KafkaScanError) throw new UsageError(redact(err.message));
    throw err;
  }
  const label = `kafka ${topics.join(',')}`;
  return {
    input: {
      pages: (async function* () {
        try {
          yield* scan.pages();
          // Something else wrote to the topic (the live bus dead-letters these).
          if (scan.unreadable > 0)
            process.stderr.write(
              `${label}: ${scan.unreadable} messages were not events with a @timestamp: skipped\n`,
            );
        } catch (err) {
          if (err instanceof KafkaScanError)
            throw new UsageError(`${label}: ${redact(err.message)}`);
          throw err;
        }
      })(),
    },
    label,
    readFrom,
    total: scan.total,
    unit: 'events',
    method: 'a group of its own, no commits, partitions merged by event time',
    close: () => scan.close(),
  };
}

async function openElasticsearch(
  flags: SourceFlags,
  config: DroverConfig,
  readFrom: number,
  to: number | undefined,
): Promise<OpenedSource> {
  if (config.index.kind !== 'elasticsearch')
    throw new UsageError(
      '--source elasticsearch needs an Elasticsearch URL: ELASTICSEARCH_URL, or index.url in --config',
    );
  const { url, prefix } = config.index;
  // Drover's event indices: the data stream `<prefix>-events` or the daily
  // `<prefix>-events-YYYY.MM.DD` (ingest/index/templates.ts).
  const index = flags.index ?? `${prefix}-events*`;
  if (index === '' || index.length > 255 || /[\s"\\<>|?#/]/.test(index) || index.startsWith('_'))
    throw new UsageError(`--index: "${index}" is not an index name or pattern`);
  const { ElasticsearchScan, ScanError } = await import('../../ingest/sinks/index.ts');
  const method = process.env.DROVER_BACKTEST_ES_METHOD;
  if (method !== undefined && method !== 'pit' && method !== 'scroll' && method !== 'auto')
    throw new UsageError('DROVER_BACKTEST_ES_METHOD is pit, scroll or auto');
  let scan: InstanceType<typeof ElasticsearchScan>;
  try {
    scan = new ElasticsearchScan({
      node: url,
      index,
      from: readFrom,
      to,
      pageSize: pageSize(),
      method,
    });
    await scan.open();
  } catch (err) {
    if (err instanceof ScanError || (err as Error).name === 'ConfigurationError')
      throw new UsageError(`elasticsearch ${redact(url)}: ${redact((err as Error).message)}`);
    throw err;
  }
  const pages = scan.pages();
  const label = `elasticsearch ${index}`;
  return {
    input: {
      pages: (async function* () {
        try {
          yield* pages;
        } catch (err) {
          if (err instanceof ScanError) throw new UsageError(`${label}: ${redact(err.message)}`);
          throw err;
        }
      })(),
    },
    label,
    readFrom,
    get total() {
      return scan.total;
    },
    unit: 'events',
    method: scan.method === 'pit' ? 'point in time + search_after' : 'sorted scroll',
    close: () => scan.close(),
  };
}

const DURATION_UNITS: Array<[number, string]> = [
  [86_400_000, 'd'],
  [3_600_000, 'h'],
  [60_000, 'm'],
  [1_000, 's'],
];

/** 90061000 → `1d1h1m1s`; Infinity → `all history`. */
export function durationText(ms: number): string {
  if (!Number.isFinite(ms)) return 'all history';
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [size, unit] of DURATION_UNITS) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return rest > 0 ? `${out}${rest}ms` : out;
}

/**
 * The warm-up table for stderr: one line per rule, its need and what it got, `short`
 * where it got less. Rule names come from trusted rule files.
 */
export function warmupLines(entries: WarmupEntry[], from: number | undefined): string {
  if (entries.length === 0) return '';
  const head =
    from === undefined
      ? 'warm-up: no --from, alerts from the first event'
      : `warm-up before ${new Date(from).toISOString()}:`;
  const width = Math.max(4, ...entries.map((e) => e.rule.length));
  const rows = entries.map((e) => {
    const short = e.gotMs < e.needMs ? '  short' : '';
    return `  ${e.rule.padEnd(width)}  needs ${durationText(e.needMs).padEnd(10)} got ${durationText(e.gotMs)}${short}`;
  });
  return `${head}\n${rows.join('\n')}\n`;
}

/** The warm-up in the JSON summary: needMs null for "all history". */
export function warmupJson(entries: WarmupEntry[]) {
  return entries.map((e) => ({
    rule: e.rule,
    needMs: Number.isFinite(e.needMs) ? e.needMs : null,
    gotMs: e.gotMs,
    enough: e.gotMs >= e.needMs,
  }));
}
