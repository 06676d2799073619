/**
 * A set of entry ids (rule keys: event values) that never rehashes more than a small
 * part of itself at once. A `Set` doubles its table as it grows, copying every entry in
 * one go: the ids a runner touches between two captures (rules/changes.ts) start from
 * empty at each capture, so at 1 M ids one `Set` stopped the loop ~35 ms at each
 * doubling, every snapshot period. Here the ids are spread over SHARDS sets by a hash
 * of a few of their characters, and a doubling copies one shard.
 *
 * Bounds: the ids are what the runner holds, which its key caps bound (maxKeysPerRule);
 * the hash reads at most 12 characters, so its cost does not grow with an id's length.
 * Ids chosen to land in one shard (they are attacker-written) cost what one `Set` does:
 * correct, only the pauses of the plain `Set` back.
 */
const SHARDS = 64;

function shardOf(id: string): number {
  const n = id.length;
  let h = n * 0x9e3779b1;
  // The last characters vary most in keys (host-17, 10.0.0.3); the first few too.
  const tail = n > 8 ? n - 8 : 0;
  for (let i = tail; i < n; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  const head = tail < 4 ? tail : 4;
  for (let i = 0; i < head; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  return (h >>> 0) & (SHARDS - 1);
}

export class IdSet {
  /** Made on first use: an engine of 1,000 rules holds one IdSet per rule. */
  private readonly shards: (Set<string> | undefined)[] = new Array<undefined>(SHARDS).fill(
    undefined,
  );
  size = 0;

  add(id: string): void {
    const i = shardOf(id);
    const shard = (this.shards[i] ??= new Set());
    const before = shard.size;
    shard.add(id);
    this.size += shard.size - before;
  }

  /** Empties the set (its shards dropped: made again on first use). */
  clear(): void {
    this.shards.fill(undefined);
    this.size = 0;
  }

  has(id: string): boolean {
    return this.shards[shardOf(id)]?.has(id) === true;
  }

  /** True when the id was held (and is no more). */
  delete(id: string): boolean {
    if (this.shards[shardOf(id)]?.delete(id) !== true) return false;
    this.size--;
    return true;
  }

  /**
   * A live view, as a `Set`'s: ids deleted before they are reached are not yielded
   * (and ids added to a shard not yet reached are).
   */
  *values(): Generator<string> {
    for (let i = 0; i < SHARDS; i++) {
      const shard = this.shards[i];
      if (shard !== undefined) yield* shard;
    }
  }

  /** The largest shard's size: what one growth may copy at most. */
  largestShard(): number {
    let max = 0;
    for (const shard of this.shards) if (shard !== undefined && shard.size > max) max = shard.size;
    return max;
  }
}
