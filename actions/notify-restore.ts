import type { ActionObject, Alert } from '../rules/index.ts';
import type { Decision, RemediationStore } from './journal/types.ts';
import { MAX_JOURNALED_IDS } from './journal/types.ts';
import type { GroupSpec } from './notify-groups.ts';
import { plan, type PlannedAction } from './policy.ts';

/**
 * Notification groups waiting when Drover stopped without sending them (SIGKILL, a
 * crash) are rebuilt from the journal at start: an alert that joined a group was
 * journaled `suppressed`, guard `group`, naming the notification it goes out in; a
 * notification with no journal entry of its own was never sent (nor suppressed, nor
 * failed). Its alerts are added to their groups again, under the same notification id,
 * and the group goes out when its group_wait, counted from its first alert's entry, ends
 * (at once if that passed): late, but once.
 *
 * Bounds (the journal's alerts hold attacker-written keys): at most
 * RESTORE_MAX_ENTRIES group entries are read, the newest, and none older than
 * RESTORE_LOOK_BACK_MS; an entry is restored only if it is younger than its own action's
 * group_wait + group_interval + repeat_interval, the longest a batch waits to go out
 * (a batch of keys already notified is held up to repeat_interval). Notification ids are
 * looked up MAX_JOURNALED_IDS at a time.
 *
 * Not covered: a page the adapter sent just before the kill, before its journal entry,
 * goes out again (at least once); a restored batch of keys already notified goes out as
 * new (the group's memory of what it notified is not journaled); the alerts' resolutions
 * before the restart are not known, so restored alerts are not checked for staleness.
 */
/** At most 2,000 entries of at most 16 KiB of alert each (the journal's bound) are read. */
export const RESTORE_MAX_ENTRIES = 2_000;
/** 24 h: a default group (4 h repeat_interval) fits; a longer wait is not restored. */
export const RESTORE_LOOK_BACK_MS = 24 * 3_600_000;

const GROUPED = /^grouped: goes out in notification (\S{1,600}\/group) with the other alerts/;

export interface RestoreDeps {
  store: RemediationStore;
  actionSets?: Record<string, ActionObject[]>;
  clock: () => number;
  /** Adds the alert to its group, as the remediator does; the batch id, or undefined. */
  add: (
    alert: Alert,
    identity: string,
    spec: GroupSpec,
    entryId: string,
    item: Extract<PlannedAction, { kind: 'act' }>,
  ) => string | undefined;
}

export interface RestoreResult {
  /** Notifications rebuilt, to go out. */
  notifications: number;
  /** Alerts added back to their groups. */
  alerts: number;
  /** Group entries that could not be restored (no alert kept, action gone, cap on groups). */
  skipped: number;
}

/** The notification id a group entry names, if it is one. */
function notificationOf(d: Decision): string | undefined {
  if (d.decision !== 'suppressed' || d.guard !== 'group') return undefined;
  if (d.notification !== undefined) return d.notification;
  // Entries journaled before the id had its own field name it in their reason.
  return d.reason === undefined ? undefined : GROUPED.exec(d.reason)?.[1];
}

export async function restoreGroups(deps: RestoreDeps): Promise<RestoreResult> {
  const now = deps.clock();
  const entries = await deps.store.grouped(now - RESTORE_LOOK_BACK_MS, RESTORE_MAX_ENTRIES);
  const byNotification = new Map<string, Decision[]>();
  for (const d of entries) {
    const id = notificationOf(d);
    if (id === undefined) continue;
    const list = byNotification.get(id) ?? [];
    list.push(d);
    byNotification.set(id, list);
  }
  const ids = [...byNotification.keys()];
  const sent = new Set<string>();
  for (let i = 0; i < ids.length; i += MAX_JOURNALED_IDS)
    for (const id of await deps.store.journaled(ids.slice(i, i + MAX_JOURNALED_IDS))) sent.add(id);
  const result: RestoreResult = { notifications: 0, alerts: 0, skipped: 0 };
  for (const [id, waiting] of byNotification) {
    if (sent.has(id)) continue;
    // add() names the batch after its first alert's entry id + `/group`: the same id.
    const stem = id.slice(0, -'/group'.length);
    let added = 0;
    for (const d of waiting) {
      const p = d.alert && (await planned(d, deps.actionSets));
      const spec = p?.group;
      if (!p || !spec || d.at < now - (spec.waitMs + spec.intervalMs + spec.repeatMs)) {
        result.skipped++;
        continue;
      }
      // The wait left of the group's first alert; the group's timing is otherwise its own.
      const waitMs = Math.max(0, waiting[0]!.at + spec.waitMs - now);
      const batch = deps.add(
        // The entry's own key: the journal drops the alert's copy of an oversized one.
        { ...d.alert!, key: d.key },
        `${p.adapter}\u0000${p.target}`,
        { ...spec, waitMs: Math.max(1, waitMs) },
        stem,
        p,
      );
      if (batch === undefined) result.skipped++;
      else added++;
    }
    if (added > 0) result.notifications++;
    result.alerts += added;
  }
  return result;
}

/** The entry's action, planned again from the alert the journal kept. */
async function planned(
  d: Decision,
  actionSets: Record<string, ActionObject[]> | undefined,
): Promise<Extract<PlannedAction, { kind: 'act' }> | undefined> {
  const index = Number(/#(\d{1,6})$/.exec(d.id)?.[1]);
  if (!Number.isInteger(index)) return undefined;
  const p = (await plan(d.alert!, actionSets)).find((a) => a.index === index);
  return p?.kind === 'act' && p.operation === 'notify' ? p : undefined;
}
