import { createHash } from 'node:crypto';
import type { Alert } from '../rules/index.ts';
import { parseDuration } from '../rules/duration.ts';
import { clip } from './adapters/slack-text.ts';

/**
 * Notification groups, as Alertmanager's. Every notify action groups its alerts unless
 * it says `group: false`: the first alert of a new group waits `group_wait`; then one
 * notification lists every alert that joined meanwhile. Later alerts of the group go out
 * together at most every `group_interval`, and only if one of them is for a key the
 * group has not notified yet; a batch of keys already notified (a still-firing group)
 * waits until `repeat_interval` has passed since the group's last notification, and goes
 * out at the first group_interval tick after it. A group that received nothing since its
 * last notification is forgotten at the first tick after repeat_interval.
 *
 * Defaults (DEFAULT_GROUP), for a remediation tool: `group_by: [rule]`, one page per
 * rule and target; `group_wait: 10s`, long enough that a burst of alerts from one bus
 * batch, or from events spread over the rules' allowed lateness (5 s by default), is one
 * page, short enough that a single alert is not held long; `group_interval: 5m` and
 * `repeat_interval: 4h`, Alertmanager's.
 *
 * Group state is keyed by event values (the group_by fields): at most `maxGroups` groups
 * live at once (default 1,000); an alert that would open one more is not grouped (the
 * caller takes the per-target cooldown path and counts it). Each group holds one alert
 * (its first, for the notification's context), a count, the first `maxListed`
 * (default 20) alert keys, each clipped to KEY_LABEL_MAX characters, with each one's
 * firing (a digest) and event time, for the resolution check at send, and a digest of at
 * most MAX_REMEMBERED_KEYS keys it has seen (an unremembered key counts as new, so past
 * that cap the group pages at group_interval as it would without repeat_interval); its
 * identity is clipped to GROUP_VALUE_MAX characters per group_by field. Nothing else
 * grows with the alerts a group receives.
 */
export interface GroupSpec {
  by: string[];
  waitMs: number;
  intervalMs: number;
  repeatMs: number;
}

export const DEFAULT_GROUP = {
  by: ['rule'],
  waitMs: 10_000,
  intervalMs: 5 * 60_000,
  repeatMs: 4 * 3_600_000,
} as const;
export const DEFAULT_MAX_GROUPS = 1_000;
export const DEFAULT_MAX_LISTED = 20;
/** Keys a group remembers as notified, for repeat_interval. */
export const MAX_REMEMBERED_KEYS = 256;
/** At shutdown, waiting groups are sent; this long at most is waited for them. */
export const DEFAULT_GROUP_FLUSH_MS = 10_000;
const KEY_LABEL_MAX = 64;
const GROUP_VALUE_MAX = 256;
const GROUP_KEYS = ['group_by', 'group_wait', 'group_interval', 'repeat_interval'] as const;

/**
 * The action's grouping: every notify action groups, with DEFAULT_GROUP for what it does
 * not set, unless it has `group: false`; undefined for other operations and for
 * `group: false`. Throws a clear error when the options are invalid.
 */
export function groupSpec(action: Record<string, unknown>): GroupSpec | undefined {
  const given = GROUP_KEYS.filter((k) => action[k] !== undefined);
  if (action.operation !== 'notify') {
    if (given.length > 0 || action.group !== undefined)
      throw new Error(
        'group_by, group_wait, group_interval apply to notify actions only (group and repeat_interval too)',
      );
    return undefined;
  }
  if (action.group !== undefined && typeof action.group !== 'boolean')
    throw new Error(`group is true (the default) or false (page per alert)`);
  if (action.group === false) {
    if (given.length > 0)
      throw new Error(`group: false pages per alert; ${given.join(', ')} would be ignored`);
    return undefined;
  }
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
    repeatMs: duration('repeat_interval', DEFAULT_GROUP.repeatMs),
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

/**
 * An alert key's identity within a group, for repeat_interval: a cryptographic digest,
 * so a forged key cannot be made to pass for one already notified.
 */
function keyDigest(alert: Alert): string {
  return createHash('sha256').update(JSON.stringify(alert.key)).digest('base64url').slice(0, 22);
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
  /**
   * For each listed alert, what tells whether its firing resolved before the batch goes
   * out: the caller's `firing` of the alert (NotifyGroupsOptions) and its event time.
   * Alerts past `maxListed` are counted only, and go out as counted.
   */
  firings: Array<{ firing: string; at: string }>;
}

/**
 * The batch without its listed alerts whose firing `resolved` says resolved: undefined
 * when none is left; the batch itself when none resolved.
 */
export function withoutResolved<T>(
  batch: Batch<T>,
  resolved: (f: { firing: string; at: string }) => boolean,
): Batch<T> | undefined {
  const keep = batch.firings.map((f) => !resolved(f));
  const dropped = keep.filter((k) => !k).length;
  if (dropped === 0) return batch;
  if (dropped >= batch.count) return undefined;
  return {
    ...batch,
    count: batch.count - dropped,
    listed: batch.listed.filter((_, i) => keep[i]),
    firings: batch.firings.filter((_, i) => keep[i]),
  };
}

interface Group<T> {
  batch: Batch<T> | undefined;
  timer: unknown;
  /** Wall-clock time of the group's last notification; undefined before the first. */
  lastSent: number | undefined;
  /** Digests of the alert keys the group has seen, at most MAX_REMEMBERED_KEYS. */
  seen: Set<string>;
  /** The batch holds an alert for a key not seen before. */
  news: boolean;
  spec: GroupSpec;
}

export interface GroupTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface NotifyGroupsOptions<T> {
  send: (batch: Batch<T>) => Promise<void>;
  timers?: GroupTimers;
  /** Wall clock (epoch ms) for repeat_interval; the timers' own. Default Date.now. */
  clock?: () => number;
  maxGroups?: number;
  maxListed?: number;
  /** An alert's firing, for Batch.firings (default: its rule and key, digested). */
  firing?: (alert: Alert) => string;
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
  const clock = options.clock ?? Date.now;
  const maxGroups = options.maxGroups ?? DEFAULT_MAX_GROUPS;
  const maxListed = options.maxListed ?? DEFAULT_MAX_LISTED;
  const firing = options.firing ?? ((a: Alert) => `${a.rule}\u0000${keyDigest(a)}`);
  const groups = new Map<string, Group<T>>();
  const inflight = new Set<Promise<void>>();
  let overflow = 0;
  let closed = false;

  const send = (batch: Batch<T>) => {
    const p = options.send(batch).finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const repeatDue = (g: Group<T>, now: number) =>
    g.lastSent === undefined || now - g.lastSent >= g.spec.repeatMs;
  /** group_wait, then each group_interval: send, hold (repeats only) or forget. */
  const fire = (key: string, g: Group<T>, spec: GroupSpec) => {
    const now = clock();
    const due = repeatDue(g, now);
    const batch = g.batch;
    if (!batch && due) {
      groups.delete(key); // quiet since its last page, for repeat_interval: the group is over
      return;
    }
    g.timer = timers.setTimeout(() => fire(key, g, spec), spec.intervalMs);
    if (!batch || !(g.news || due)) return; // keys already notified: held
    g.batch = undefined;
    g.news = false;
    g.lastSent = now;
    send(batch);
  };

  return {
    add(alert, identity, spec, entryId, item) {
      if (closed) return undefined;
      const labels = Object.fromEntries(spec.by.map((f) => [f, fieldValue(alert, f)]));
      const key = JSON.stringify([
        identity,
        spec.by,
        spec.intervalMs,
        spec.repeatMs,
        Object.values(labels),
      ]);
      let g = groups.get(key);
      if (!g) {
        if (groups.size >= maxGroups) {
          overflow++;
          return undefined;
        }
        const created: Group<T> = {
          batch: undefined,
          timer: undefined,
          lastSent: undefined,
          seen: new Set(),
          news: false,
          spec,
        };
        created.timer = timers.setTimeout(() => fire(key, created, spec), spec.waitMs);
        groups.set(key, created);
        g = created;
      }
      const digest = keyDigest(alert);
      if (!g.seen.has(digest)) {
        g.news = true;
        if (g.seen.size < MAX_REMEMBERED_KEYS) g.seen.add(digest);
      }
      g.batch ??= {
        id: `${entryId}/group`,
        labels,
        first: { alert, item },
        count: 0,
        listed: [],
        firings: [],
      };
      g.batch.count++;
      if (g.batch.listed.length < maxListed) {
        g.batch.listed.push(keyLabel(alert));
        g.batch.firings.push({ firing: firing(alert), at: alert.at });
      }
      return g.batch.id;
    },
    async flush() {
      closed = true;
      const now = clock();
      for (const g of groups.values()) {
        timers.clearTimeout(g.timer);
        // A batch of keys already notified stays held: repeat_interval is not shortened.
        if (g.batch && (g.news || repeatDue(g, now))) send(g.batch);
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
