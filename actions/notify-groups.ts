import type { Alert } from '../rules/index.ts';
import { parseDuration } from '../rules/duration.ts';
import { clip } from './adapters/slack-text.ts';

/**
 * Notification groups, as Alertmanager's: a notify action with `group_by`, `group_wait`
 * or `group_interval` does not page per alert. The first alert of a new group waits
 * `group_wait`; then one notification lists every alert that joined meanwhile. Later
 * alerts of the group go out together at most every `group_interval`; a group that
 * received nothing for a whole interval is forgotten.
 *
 * Group state is keyed by event values (the group_by fields): at most `maxGroups` groups
 * live at once (default 1,000); an alert that would open one more is not grouped (the
 * caller takes the per-target cooldown path and counts it). Each group holds one alert
 * (its first, for the notification's context), a count, and the first `maxListed`
 * (default 20) alert keys, each clipped to KEY_LABEL_MAX characters; its identity is
 * clipped to GROUP_VALUE_MAX characters per group_by field. Nothing else grows with
 * the alerts a group receives.
 */
export interface GroupSpec {
  by: string[];
  waitMs: number;
  intervalMs: number;
}

export const DEFAULT_GROUP = { by: ['rule'], waitMs: 30_000, intervalMs: 5 * 60_000 } as const;
export const DEFAULT_MAX_GROUPS = 1_000;
export const DEFAULT_MAX_LISTED = 20;
/** At shutdown, waiting groups are sent; this long at most is waited for them. */
export const DEFAULT_GROUP_FLUSH_MS = 10_000;
const KEY_LABEL_MAX = 64;
const GROUP_VALUE_MAX = 256;
const GROUP_KEYS = ['group_by', 'group_wait', 'group_interval'] as const;

/** The action's grouping, undefined when it does not group; throws a clear error when invalid. */
export function groupSpec(action: Record<string, unknown>): GroupSpec | undefined {
  if (!GROUP_KEYS.some((k) => action[k] !== undefined)) return undefined;
  if (action.operation !== 'notify')
    throw new Error(`${GROUP_KEYS.join(', ')} apply to notify actions only`);
  const by = action.group_by ?? DEFAULT_GROUP.by;
  if (!Array.isArray(by) || by.some((f) => !validField(f)))
    throw new Error(
      `group_by is a list of rule, labels.X or key.FIELD (got ${JSON.stringify(by)})`,
    );
  const duration = (name: string, fallback: number) => {
    const v = action[name];
    if (v === undefined) return fallback;
    const ms = parseDuration(v);
    if (!(ms > 0)) throw new Error(`${name} must be a positive duration`);
    return ms;
  };
  return {
    by: by as string[],
    waitMs: duration('group_wait', DEFAULT_GROUP.waitMs),
    intervalMs: duration('group_interval', DEFAULT_GROUP.intervalMs),
  };
}

function validField(f: unknown): boolean {
  return f === 'rule' || (typeof f === 'string' && /^(labels|key)\.\S/.test(f) && f.length <= 200);
}

/**
 * An event value as one line of a page: control characters (newlines included, which
 * could forge lines such as "and 0 more") become spaces, then it is clipped.
 */
function oneLine(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return clip(text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' '), max);
}

/** The alert's value for one group_by field, clipped. */
function fieldValue(alert: Alert, field: string): string {
  const v =
    field === 'rule'
      ? alert.rule
      : field.startsWith('labels.')
        ? alert.labels[field.slice('labels.'.length)]
        : alert.key[field.slice('key.'.length)];
  const text = v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  return oneLine(text ?? '', GROUP_VALUE_MAX);
}

/** How an alert is named in a grouped notification: its key values, else its id. */
function keyLabel(alert: Alert): string {
  const values = Object.values(alert.key).map((v) =>
    typeof v === 'string' ? v : JSON.stringify(v),
  );
  return oneLine(values.length > 0 ? values.join(' ') : alert.id, KEY_LABEL_MAX);
}

/** The alerts one grouped notification covers. */
export interface Batch<T> {
  /** The notification's journal id (the first alert's entry id + `/group`). */
  id: string;
  /** The group_by fields and their values. */
  labels: Record<string, string>;
  first: { alert: Alert; item: T };
  count: number;
  /** The first `maxListed` alert keys. */
  listed: string[];
}

interface Group<T> {
  batch: Batch<T> | undefined;
  timer: unknown;
}

export interface GroupTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface NotifyGroupsOptions<T> {
  send: (batch: Batch<T>) => Promise<void>;
  timers?: GroupTimers;
  maxGroups?: number;
  maxListed?: number;
}

export interface NotifyGroups<T> {
  /** Adds the alert to its group; the id of the notification it will go out in, or undefined at the cap. */
  add(
    alert: Alert,
    identity: string,
    spec: GroupSpec,
    entryId: string,
    item: T,
  ): string | undefined;
  /** Sends every waiting batch now and stops the timers; later adds are refused. */
  flush(): Promise<void>;
  /** Resolves when the notifications started so far are done. */
  settled(): Promise<void>;
  readonly size: number;
  /** Alerts turned away by the cap on groups. */
  readonly overflow: number;
}

export function createNotifyGroups<T>(options: NotifyGroupsOptions<T>): NotifyGroups<T> {
  const timers: GroupTimers = options.timers ?? {
    setTimeout: (fn, ms) => {
      const t = setTimeout(fn, ms);
      t.unref();
      return t;
    },
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  };
  const maxGroups = options.maxGroups ?? DEFAULT_MAX_GROUPS;
  const maxListed = options.maxListed ?? DEFAULT_MAX_LISTED;
  const groups = new Map<string, Group<T>>();
  const inflight = new Set<Promise<void>>();
  let overflow = 0;
  let closed = false;

  const send = (batch: Batch<T>) => {
    const p = options.send(batch).finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const fire = (key: string, g: Group<T>, intervalMs: number) => {
    const batch = g.batch;
    if (!batch) {
      groups.delete(key); // a whole interval without alerts: the group is over
      return;
    }
    g.batch = undefined;
    g.timer = timers.setTimeout(() => fire(key, g, intervalMs), intervalMs);
    send(batch);
  };

  return {
    add(alert, identity, spec, entryId, item) {
      if (closed) return undefined;
      const labels = Object.fromEntries(spec.by.map((f) => [f, fieldValue(alert, f)]));
      const key = JSON.stringify([identity, spec.by, spec.intervalMs, Object.values(labels)]);
      let g = groups.get(key);
      if (!g) {
        if (groups.size >= maxGroups) {
          overflow++;
          return undefined;
        }
        const created: Group<T> = { batch: undefined, timer: undefined };
        created.timer = timers.setTimeout(() => fire(key, created, spec.intervalMs), spec.waitMs);
        groups.set(key, created);
        g = created;
      }
      g.batch ??= { id: `${entryId}/group`, labels, first: { alert, item }, count: 0, listed: [] };
      g.batch.count++;
      if (g.batch.listed.length < maxListed) g.batch.listed.push(keyLabel(alert));
      return g.batch.id;
    },
    async flush() {
      closed = true;
      for (const g of groups.values()) {
        timers.clearTimeout(g.timer);
        if (g.batch) send(g.batch);
      }
      groups.clear();
      await this.settled();
    },
    async settled() {
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
    },
    get size() {
      return groups.size;
    },
    get overflow() {
      return overflow;
    },
  };
}

/**
 * `[rule] 300 alerts (web-1, web-2, … and 280 more)`, and the list, one key a line. The
 * title names as many keys as fit in `titleMax` characters and counts the rest, so
 * clipping never drops the count; the text is clipped to `textMax`.
 */
export function groupText<T>(
  batch: Batch<T>,
  titleMax: number,
  textMax: number,
): { title: string; text: string } {
  const n = batch.count;
  const head = `[${oneLine(batch.first.alert.rule, 100)}] ${n} alert${n === 1 ? '' : 's'}`;
  const names: string[] = [];
  let length = head.length + 3;
  for (const k of batch.listed) {
    const tailRoom = ` and ${n} more`.length;
    if (length + k.length + 2 + tailRoom > titleMax) break;
    names.push(k);
    length += k.length + 2;
  }
  const untitled = n - names.length;
  const more = n - batch.listed.length;
  const grouping = Object.entries(batch.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return {
    title: clip(
      `${head} (${names.join(', ')}${untitled > 0 ? ` and ${untitled} more` : ''})`,
      titleMax,
    ),
    text: clip(
      `${head}:\n${batch.listed.map((k) => `${k}\n`).join('')}${more > 0 ? `and ${more} more\n` : ''}grouped by ${grouping}`,
      textMax,
    ),
  };
}
