/**
 * statsd lines (`name:value|type[|@rate][|#tag:v,...]`), DogStatsD tags included:
 * counters (scaled by their sample rate), gauges (with `+n` / `-n` deltas against the
 * last value), timers, histograms and distributions (ms), and sets. A malformed line
 * is reported and the others in the packet still count.
 */
export interface StatsdResult {
  samples: Record<string, unknown>[];
  errors: Array<{ line: string; error: string }>;
}

const TYPES: Record<string, string> = {
  c: 'counter',
  g: 'gauge',
  ms: 'timer',
  h: 'histogram',
  d: 'distribution',
  s: 'set',
};

/** Gauge series remembered for deltas by default. */
export const MAX_GAUGES = 10_000;

export class StatsdDecoder {
  /**
   * Last gauge value per series, for deltas. Series are names and tags the sender
   * picks: at most `maxGauges` are kept, the least recently set evicted first (a delta
   * on an evicted series starts again from 0), and evictions are counted.
   */
  private readonly gauges = new Map<string, number>();
  /** Series evicted so far. */
  evicted = 0;

  constructor(private readonly maxGauges = MAX_GAUGES) {}

  decode(packet: string, receivedAt = Date.now()): StatsdResult {
    const result: StatsdResult = { samples: [], errors: [] };
    for (const line of packet.split('\n')) {
      if (line.trim() === '') continue;
      try {
        result.samples.push(this.line(line.trim(), receivedAt));
      } catch (err) {
        result.errors.push({ line, error: (err as Error).message });
      }
    }
    return result;
  }

  private line(line: string, receivedAt: number): Record<string, unknown> {
    const m = /^([^:|#]+):([^|]*)\|([a-z]+)((?:\|[@#][^|]*)*)$/.exec(line);
    if (!m) throw new Error('expected name:value|type');
    const [, name, rawValue, code, rest] = m as unknown as [string, string, string, string, string];
    const type = TYPES[code];
    if (!type) throw new Error(`unknown metric type "${code}"`);
    let rate = 1;
    const tags: Record<string, string> = {};
    for (const part of rest.split('|').filter(Boolean)) {
      if (part.startsWith('@')) {
        rate = Number(part.slice(1));
        if (!(rate > 0 && rate <= 1)) throw new Error(`invalid sample rate "${part}"`);
      } else {
        for (const tag of part.slice(1).split(',').filter(Boolean)) {
          const i = tag.indexOf(':');
          tags[`labels.${i < 0 ? tag : tag.slice(0, i)}`] = i < 0 ? 'true' : tag.slice(i + 1);
        }
      }
    }
    const sample: Record<string, unknown> = {
      ...tags,
      '@timestamp': receivedAt,
      'metric.name': name,
      'metric.type': type,
    };
    if (tags['labels.service'] !== undefined) sample['service.name'] = tags['labels.service'];
    if (tags['labels.host'] !== undefined) sample['host.name'] = tags['labels.host'];
    if (type === 'set') {
      sample['metric.value'] = 1;
      sample['metric.set_member'] = rawValue;
      return sample;
    }
    const value = Number(rawValue);
    if (rawValue.trim() === '' || !Number.isFinite(value))
      throw new Error(`value "${rawValue}" is not a number`);
    if (type === 'counter') sample['metric.value'] = value / rate;
    else if (type === 'gauge') {
      const series = `${name}|${JSON.stringify(tags)}`;
      const next = /^[+-]/.test(rawValue) ? (this.gauges.get(series) ?? 0) + value : value;
      // Re-inserted, so the map's order is the order of last use.
      if (!this.gauges.delete(series) && this.gauges.size >= this.maxGauges) {
        this.gauges.delete(this.gauges.keys().next().value!);
        this.evicted++;
      }
      this.gauges.set(series, next);
      sample['metric.value'] = next;
    } else sample['metric.value'] = value;
    if (rate !== 1) sample['metric.sample_rate'] = rate;
    return sample;
  }
}
