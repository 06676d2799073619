/**
 * Background threads give the cores to the event loop first.
 *
 * The checkpoint writer (checkpoint-writer.ts) and its fold (checkpoint-fold.ts) run
 * beside the loop while a snapshot is taken in slices. On a machine with few cores, a
 * slice that the scheduler takes the core from (to run the writer) holds the loop for
 * the slice's CPU plus the writer's turn: the 1 M-key snapshot's longest slice took
 * 4.4-4.9 ms of the loop's own CPU but 5.8-7.8 ms of wall, the rest waiting for a core
 * (bench/README.md, "Snapshots at 1 M keys"). A writer thread at a lower priority still
 * has a core whenever one is free; when the loop wants one, it is preferred. Measured:
 * the loop's wait for a core during a snapshot 2.4-5.7 times less; its longest slice by
 * wall not shorter (V8's helper threads run at the loop's priority).
 *
 * Linux only: there a thread has its own nice value (setpriority with a thread id), which
 * /proc/thread-self names. Elsewhere a no-op (setpriority on a pid would lower the whole
 * process).
 */
import { readlinkSync } from 'node:fs';
import { constants, getPriority, setPriority } from 'node:os';

/** The nice value background threads take: below normal, not idle (they must progress). */
export const BACKGROUND_PRIORITY = constants.priority.PRIORITY_BELOW_NORMAL;

/**
 * Lowers the calling thread's scheduling priority to `priority` (a nice value, higher is
 * lower); true when it did. Never raises it: a thread already at `priority` or lower (the
 * process started under `nice`) is left as it is, even where raising would be allowed
 * (as root). Never throws: a thread that cannot be lowered runs as before.
 */
export function lowerThisThread(priority: number = BACKGROUND_PRIORITY): boolean {
  if (process.platform !== 'linux') return false;
  try {
    // "<pid>/task/<tid>"
    const link = readlinkSync('/proc/thread-self');
    const tid = Number(link.slice(link.lastIndexOf('/') + 1));
    if (!Number.isSafeInteger(tid) || tid <= 0) return false;
    if (getPriority(tid) >= priority) return false;
    setPriority(tid, priority);
    return true;
  } catch {
    return false;
  }
}
