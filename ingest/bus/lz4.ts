/**
 * LZ4 as Kafka frames it (record batches of magic 1 and 2, Kafka >= 0.10): the LZ4 frame
 * format (magic 0x184D2204), version 1, independent blocks of at most 64 KiB, no block or
 * content checksums, and the frame descriptor's checksum computed over the descriptor only
 * (brokers before 0.10 checksummed the magic too; magic-2 batches never do). Kafka's
 * `lz4-java` reads it, and so does the `lz4` command line tool.
 *
 * Pure TypeScript: npm installs no native module here. The compressor is LZ4's greedy
 * one (a hash table of 4-byte sequences, no chains), the decompressor a bounds-checked
 * one: a hostile frame (from the broker, or anything that reaches the fetch decoder) is a
 * Lz4Error, never an out-of-bounds read, a loop, or output beyond the caller's limit.
 * Both run in time linear in their input plus output.
 */

export class Lz4Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Lz4Error';
  }
}

/** Thrown when a frame decompresses to more than the caller allows. */
export class Lz4TooLargeError extends Lz4Error {
  constructor(limit: number) {
    super(`lz4 frame decompresses to more than ${limit} bytes`);
    this.name = 'Lz4TooLargeError';
  }
}

const MAGIC = 0x184d2204;
/** Skippable frames: 0x184D2A50 to 0x184D2A5F. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE = 0x184d2a50;
/** FLG: version 01, independent blocks, no checksums, no content size, no dictionary. */
const FLG = 0x60;
/** BD: 64 KiB blocks (Kafka's default). */
const BD = 0x40;
const BLOCK_SIZE = 64 << 10;
const UNCOMPRESSED_BIT = 0x80000000;

const MIN_MATCH = 4;
/** The last 5 bytes of a block are literals, and a match starts 12 bytes before its end. */
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
/**
 * The hash table holds positions relative to the block's start, 16 bits each: blocks are
 * independent and at most 64 KiB, so every position fits and every match is within the
 * format's 65,535-byte reach (the reference lz4 does the same for inputs under 64 KiB,
 * with 2^13 entries: 16 KiB, which stays in the first-level cache).
 */
const HASH_LOG = 13;
const HASH_SHIFT = 32 - HASH_LOG;
/** After 2^SKIP_TRIGGER misses in a row the search step grows by one (LZ4's acceleration). */
const SKIP_TRIGGER = 6;

const PRIME32_1 = 0x9e3779b1;
const PRIME32_2 = 0x85ebca77;
const PRIME32_3 = 0xc2b2ae3d;
const PRIME32_4 = 0x27d4eb2f;
const PRIME32_5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function u32le(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;
}

/** xxHash32 of `b[from, to)` (the frame's checksums use seed 0). */
export function xxh32(b: Uint8Array, from: number, to: number, seed = 0): number {
  let i = from;
  let h: number;
  if (to - from >= 16) {
    let v1 = (seed + PRIME32_1 + PRIME32_2) | 0;
    let v2 = (seed + PRIME32_2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - PRIME32_1) | 0;
    while (i <= to - 16) {
      v1 = Math.imul(rotl((v1 + Math.imul(u32le(b, i), PRIME32_2)) | 0, 13), PRIME32_1);
      v2 = Math.imul(rotl((v2 + Math.imul(u32le(b, i + 4), PRIME32_2)) | 0, 13), PRIME32_1);
      v3 = Math.imul(rotl((v3 + Math.imul(u32le(b, i + 8), PRIME32_2)) | 0, 13), PRIME32_1);
      v4 = Math.imul(rotl((v4 + Math.imul(u32le(b, i + 12), PRIME32_2)) | 0, 13), PRIME32_1);
      i += 16;
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + PRIME32_5) | 0;
  }
  h = (h + (to - from)) | 0;
  while (i <= to - 4) {
    h = Math.imul(rotl((h + Math.imul(u32le(b, i), PRIME32_3)) | 0, 17), PRIME32_4);
    i += 4;
  }
  while (i < to) {
    h = Math.imul(rotl((h + Math.imul(b[i]!, PRIME32_5)) | 0, 11), PRIME32_1);
    i++;
  }
  h ^= h >>> 15;
  h = Math.imul(h, PRIME32_2);
  h ^= h >>> 13;
  h = Math.imul(h, PRIME32_3);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The hash table: for a hash of 4 bytes, the last position in the current block (relative
 * to its start) where they were seen. Reused by every call and cleared per block (16 KiB),
 * so the output depends on the input only. A slot of another sequence (or 0, cleared) is
 * only a candidate: its 4 bytes are compared before it is used.
 */
const table = new Uint16Array(1 << HASH_LOG);

function hash(seq: number): number {
  return Math.imul(seq, 2654435761) >>> HASH_SHIFT;
}

function writeLength(dst: Uint8Array, at: number, n: number): number {
  while (n >= 255) {
    dst[at++] = 255;
    n -= 255;
  }
  dst[at++] = n;
  return at;
}

/**
 * One block: `src[from, to)` compressed at `dst[at]`; returns the end, or -1 when the
 * result would not be shorter than the input (the block is then stored as it is).
 * `dst` has room for the input's worst case.
 */
/** `src[from, to)` at `dst[at]`; returns the end. */
function copyLiterals(
  src: Uint8Array,
  from: number,
  to: number,
  dst: Uint8Array,
  at: number,
): number {
  if (to - from < 32) {
    for (let k = from; k < to; k++) dst[at++] = src[k]!;
    return at;
  }
  dst.set(src.subarray(from, to), at);
  return at + to - from;
}

function compressBlock(
  src: Uint8Array,
  view: DataView,
  from: number,
  to: number,
  dst: Uint8Array,
  at: number,
): number {
  const start = at;
  const limit = to - from; // the block is stored raw if the output reaches this
  let anchor = from;
  if (to - from >= MF_LIMIT + 1) {
    table.fill(0);
    const matchLimit = to - LAST_LITERALS;
    const searchEnd = to - MF_LIMIT;
    // Position 0 is in the table (cleared to it); the search starts at the next one.
    let i = from + 1;
    let misses = 1 << SKIP_TRIGGER;
    while (i < searchEnd) {
      const seq = view.getUint32(i, true);
      const h = hash(seq);
      const ref = from + table[h]!; // before i: every slot was filled at or before i - 1
      table[h] = i - from;
      if (view.getUint32(ref, true) !== seq) {
        i += misses++ >> SKIP_TRIGGER;
        continue;
      }
      misses = 1 << SKIP_TRIGGER;
      // Extend backwards over literals, then forwards.
      let s = i;
      let r = ref;
      while (s > anchor && r > from && src[s - 1] === src[r - 1]) {
        s--;
        r--;
      }
      let e = i + MIN_MATCH;
      let re = ref + MIN_MATCH;
      // Four bytes at a time; at the first word that differs, its equal low bytes.
      while (e + 4 <= matchLimit) {
        const diff = view.getUint32(e, true) ^ view.getUint32(re, true);
        if (diff !== 0) {
          e += (31 - Math.clz32(diff & -diff)) >>> 3;
          re = -1;
          break;
        }
        e += 4;
        re += 4;
      }
      if (re >= 0)
        while (e < matchLimit && src[e] === src[re]) {
          e++;
          re++;
        }
      const literals = s - anchor;
      const matchLen = e - s - MIN_MATCH;
      // token, literal length bytes, literals, offset, match length bytes (at most)
      const most = 1 + ((literals / 255) | 0) + 1 + literals + 2 + ((matchLen / 255) | 0) + 1;
      if (at - start + most >= limit) return -1;
      const token = at++;
      if (literals >= 15) {
        dst[token] = 0xf0;
        at = writeLength(dst, at, literals - 15);
      } else dst[token] = literals << 4;
      at = copyLiterals(src, anchor, s, dst, at);
      const offset = s - r;
      dst[at++] = offset & 0xff;
      dst[at++] = offset >>> 8;
      if (matchLen >= 15) {
        dst[token] |= 0x0f;
        at = writeLength(dst, at, matchLen - 15);
      } else dst[token] |= matchLen;
      anchor = e;
      i = e;
      if (i < searchEnd) table[hash(view.getUint32(i - 2, true))] = i - 2 - from;
    }
  }
  const literals = to - anchor;
  if (at - start + 1 + ((literals / 255) | 0) + 1 + literals >= limit) return -1;
  const token = at++;
  if (literals >= 15) {
    dst[token] = 0xf0;
    at = writeLength(dst, at, literals - 15);
  } else dst[token] = literals << 4;
  return copyLiterals(src, anchor, to, dst, at);
}

/** `src` as one Kafka LZ4 frame. */
export function lz4Compress(src: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(lz4Bound(src.length));
  return out.subarray(0, lz4CompressInto(src, out, 0));
}

/** The most bytes lz4CompressInto() writes for `n` bytes of input. */
export function lz4Bound(n: number): number {
  // Header 7, per block a size and at most its input (stored raw otherwise), end mark 4.
  return 7 + Math.max(1, Math.ceil(n / BLOCK_SIZE)) * 4 + n + 4;
}

/**
 * `src` as one Kafka LZ4 frame written into `out` from `start`, which must leave
 * lz4Bound(src.length) bytes; returns the frame's end. Only the frame's bytes are written.
 */
export function lz4CompressInto(src: Uint8Array, out: Buffer, start: number): number {
  const n = src.length;
  if (start < 0 || start + lz4Bound(n) > out.length)
    throw new RangeError('lz4CompressInto: the output has no room for the frame');
  out.writeUInt32LE(MAGIC, start);
  out[start + 4] = FLG;
  out[start + 5] = BD;
  out[start + 6] = (xxh32(out, start + 4, start + 6) >>> 8) & 0xff;
  let at = start + 7;
  // Unaligned little-endian 32-bit reads, one call each (sequences, match extension).
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let from = 0; from < n; from += BLOCK_SIZE) {
    const to = Math.min(n, from + BLOCK_SIZE);
    const end = compressBlock(src, view, from, to, out, at + 4);
    if (end < 0) {
      out.writeUInt32LE(((to - from) | UNCOMPRESSED_BIT) >>> 0, at);
      out.set(src.subarray(from, to), at + 4);
      at += 4 + to - from;
    } else {
      out.writeUInt32LE(end - at - 4, at);
      at = end;
    }
  }
  out.writeUInt32LE(0, at);
  return at + 4;
}

/**
 * One block `src[from, to)` decompressed into `dst` at `at`, no further than `dstEnd`;
 * returns the end. Every read and write is checked: a block that reads past its end,
 * refers before the output's start, or writes past `dstEnd` is an error (`tooLarge` for
 * the last).
 */
function decompressBlock(
  src: Uint8Array,
  from: number,
  to: number,
  dst: Uint8Array,
  at: number,
  dstEnd: number,
  blockStart: number,
  tooLarge: () => never,
): number {
  let i = from;
  for (;;) {
    if (i >= to) throw new Lz4Error('lz4 block ends inside a sequence');
    const token = src[i++]!;
    let literals = token >>> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (i >= to) throw new Lz4Error('lz4 literal length runs past the block');
        b = src[i++]!;
        literals += b;
      } while (b === 255);
    }
    if (literals > to - i) throw new Lz4Error('lz4 literals run past the block');
    if (literals > dstEnd - at) tooLarge();
    if (literals < 32) for (let k = 0; k < literals; k++) dst[at++] = src[i++]!;
    else {
      dst.set(src.subarray(i, i + literals), at);
      i += literals;
      at += literals;
    }
    if (i === to) return at; // the last sequence has no match
    if (to - i < 2) throw new Lz4Error('lz4 match offset runs past the block');
    const offset = src[i]! | (src[i + 1]! << 8);
    i += 2;
    if (offset === 0 || offset > at - blockStart)
      throw new Lz4Error(`lz4 match offset ${offset} out of range`);
    let len = token & 0x0f;
    if (len === 15) {
      let b: number;
      do {
        if (i >= to) throw new Lz4Error('lz4 match length runs past the block');
        b = src[i++]!;
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (len > dstEnd - at) tooLarge();
    let r = at - offset;
    if (offset >= len && len >= 32) {
      dst.copyWithin(at, r, r + len);
      at += len;
    } else {
      // Short, or overlapping (the match repeats the last `offset` bytes): byte by byte.
      const end = at + len;
      while (at < end) dst[at++] = dst[r++]!;
    }
  }
}

/**
 * One LZ4 frame (and any frames or skippable frames after it) decompressed, at most
 * `limit` bytes (Lz4TooLargeError past it). The output grows by doubling, so memory is
 * at most twice the output, and never more than twice `limit`.
 */
export function lz4Decompress(src: Uint8Array, limit: number): Buffer {
  const tooLarge = (): never => {
    throw new Lz4TooLargeError(limit);
  };
  let out = Buffer.allocUnsafe(Math.min(limit, Math.max(1024, src.length * 4)));
  let at = 0;
  let i = 0;
  const n = src.length;
  if (n === 0) throw new Lz4Error('lz4 frame is empty');
  while (i < n) {
    if (n - i < 4) throw new Lz4Error('lz4 frame magic cut short');
    const magic = u32le(src, i);
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE) {
      if (n - i < 8) throw new Lz4Error('lz4 skippable frame cut short');
      const size = u32le(src, i + 4);
      if (size > n - i - 8) throw new Lz4Error('lz4 skippable frame runs past the input');
      i += 8 + size;
      continue;
    }
    if (magic !== MAGIC) throw new Lz4Error(`not an lz4 frame (magic 0x${magic.toString(16)})`);
    i += 4;
    if (n - i < 3) throw new Lz4Error('lz4 frame descriptor cut short');
    const flg = src[i]!;
    const bd = src[i + 1]!;
    if (flg >>> 6 !== 1) throw new Lz4Error(`lz4 frame version ${flg >>> 6}`);
    if ((flg & 0x02) !== 0 || (bd & 0x8f) !== 0) throw new Lz4Error('lz4 frame reserved bits set');
    if ((flg & 0x01) !== 0) throw new Lz4Error('lz4 frame needs a dictionary');
    const blockMax = 1 << (8 + 2 * ((bd >>> 4) & 0x07));
    if (blockMax < BLOCK_SIZE) throw new Lz4Error(`lz4 frame block size code ${(bd >>> 4) & 7}`);
    const independent = (flg & 0x20) !== 0;
    const blockChecksum = (flg & 0x10) !== 0;
    const contentSize = (flg & 0x08) !== 0;
    const contentChecksum = (flg & 0x04) !== 0;
    const descEnd = i + 2 + (contentSize ? 8 : 0);
    if (n - descEnd < 1) throw new Lz4Error('lz4 frame descriptor cut short');
    if (src[descEnd] !== ((xxh32(src, i, descEnd) >>> 8) & 0xff))
      throw new Lz4Error('lz4 frame descriptor checksum mismatch');
    i = descEnd + 1;
    const frameStart = at;
    for (;;) {
      if (n - i < 4) throw new Lz4Error('lz4 block size cut short');
      const word = u32le(src, i);
      i += 4;
      if (word === 0) break;
      const raw = (word & UNCOMPRESSED_BIT) !== 0;
      const size = word & 0x7fffffff;
      if (size > blockMax) throw new Lz4Error(`lz4 block of ${size} bytes over ${blockMax}`);
      if (size > n - i - (blockChecksum ? 4 : 0))
        throw new Lz4Error('lz4 block runs past the input');
      // Room for the block's largest output (bounded by `limit`).
      const want = at + Math.min(blockMax, limit - at);
      if (want > out.length) {
        const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(want, out.length * 2)));
        out.copy(grown, 0, 0, at);
        out = grown;
      }
      if (raw) {
        if (size > limit - at) tooLarge();
        out.set(src.subarray(i, i + size), at);
        at += size;
      } else {
        at = decompressBlock(
          src,
          i,
          i + size,
          out,
          at,
          out.length,
          independent ? at : frameStart,
          tooLarge,
        );
      }
      i += size + (blockChecksum ? 4 : 0);
    }
    if (contentChecksum) {
      if (n - i < 4) throw new Lz4Error('lz4 content checksum cut short');
      i += 4;
    }
  }
  return out.subarray(0, at);
}
