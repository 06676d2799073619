/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of a Kafka record
 * batch, slice-by-8: eight table look-ups per eight bytes instead of one per byte.
 * Time is linear in the bytes; the tables are a fixed 8 KiB.
 */

const POLY = 0x82f63b78;
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++)
  for (let t = 1; t < 8; t++) {
    const prev = T[(t - 1) * 256 + n]!;
    T[t * 256 + n] = (prev >>> 8) ^ T[prev & 0xff]!;
  }

/**
 * CRC-32C of `buf[start, end)`, as an unsigned 32-bit number.
 *
 * The bytes past a multiple of 8 are taken first, one at a time, and the long loop is a
 * function of its own that ends with it. V8 compiles a long first call's loop on its own
 * (on-stack replacement) before the code after the loop has ever run; that code, with no
 * type feedback yet, deoptimized at every later call while V8 kept re-entering the same
 * compiled loop: 90–180 deoptimizations in a rules worker of `bench scale`, about one
 * per record batch (bench/README.md, "V8's tiers per process"). With nothing after the
 * loop but its return, the compiled loop has nothing to deoptimize on.
 */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  let crc = -1;
  let i = start;
  for (const head = end > start ? start + ((end - start) & 7) : start; i < head; i++)
    crc = T[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  if (i < end) crc = eightAtATime(buf, crc, i, end);
  return (crc ^ -1) >>> 0;
}

/** The CRC register after `buf[i, end)`, whose length is a multiple of 8. */
function eightAtATime(buf: Uint8Array, crc: number, i: number, end: number): number {
  for (; i < end; i += 8) {
    const lo = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    const hi = buf[i + 4]! | (buf[i + 5]! << 8) | (buf[i + 6]! << 16) | (buf[i + 7]! << 24);
    crc =
      T[1792 + (lo & 0xff)]! ^
      T[1536 + ((lo >>> 8) & 0xff)]! ^
      T[1280 + ((lo >>> 16) & 0xff)]! ^
      T[1024 + (lo >>> 24)]! ^
      T[768 + (hi & 0xff)]! ^
      T[512 + ((hi >>> 8) & 0xff)]! ^
      T[256 + ((hi >>> 16) & 0xff)]! ^
      T[hi >>> 24]!;
  }
  return crc;
}
