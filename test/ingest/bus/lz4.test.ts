import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  Lz4Error,
  Lz4TooLargeError,
  lz4Compress,
  lz4Decompress,
  xxh32,
} from '../../../ingest/bus/lz4.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));

/** The input of the fixtures, which the reference `lz4` tool (1.9) compressed. */
function referenceInput(): Buffer {
  const lines: string[] = [];
  let x = 7;
  for (let i = 0; i < 1000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    lines.push(
      `{"seq":${i},"service":"svc-${x % 11}","latency_ms":${x % 997},"message":"GET /items/${x.toString(36)}"}`,
    );
  }
  return Buffer.from(lines.join('\n'));
}

/** A seeded generator, so that a failing case can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** Inputs from incompressible to very repetitive, of `n` bytes. */
function sample(random: () => number, n: number): Buffer {
  const kind = Math.floor(random() * 4);
  const out = Buffer.alloc(n);
  const alphabet = 1 + Math.floor(random() * (kind === 0 ? 256 : 8));
  for (let i = 0; i < n; i++) {
    if (kind >= 2 && i > 8 && random() < 0.9) {
      // a copy of something earlier, near or far, overlapping or not
      const back = 1 + Math.floor(random() * Math.min(i, kind === 2 ? 70_000 : 16));
      out[i] = out[i - back]!;
    } else out[i] = Math.floor(random() * alphabet);
  }
  return out;
}

describe('LZ4 frames as Kafka writes them (lz4.ts)', () => {
  it('gives xxHash32 check values', () => {
    expect(xxh32(Buffer.alloc(0), 0, 0)).toBe(0x02cc5d05);
    const abc = Buffer.from('abc');
    expect(xxh32(abc, 0, 3)).toBe(0x32d153ff);
    const long = Buffer.from('Nobody inspects the spammish repetition');
    expect(xxh32(long, 0, long.length)).toBe(0xe2293b2f);
  });

  it("writes Kafka's frame: magic, version 1, independent 64 KiB blocks, descriptor checksum", () => {
    const frame = lz4Compress(Buffer.from('x'.repeat(1000)));
    expect(frame.readUInt32LE(0)).toBe(0x184d2204);
    expect(frame[4]).toBe(0x60);
    expect(frame[5]).toBe(0x40);
    expect(frame[6]).toBe((xxh32(frame, 4, 6) >>> 8) & 0xff);
    expect(frame.readUInt32LE(frame.length - 4)).toBe(0); // end mark
    expect(frame.length).toBeLessThan(40);
  });

  it("reads the reference tool's frames: linked blocks, content size, block checksums", () => {
    const input = referenceInput();
    expect(lz4Decompress(fixture('lz4-linked-blocks.lz4'), 1 << 20)).toEqual(input);
    expect(lz4Decompress(fixture('lz4-block-checksums.lz4'), 1 << 20)).toEqual(input);
    // and the same input through this compressor, which shrinks it as much within 10 %
    const ours = lz4Compress(input);
    expect(lz4Decompress(ours, 1 << 20)).toEqual(input);
    expect(ours.length).toBeLessThan(fixture('lz4-block-checksums.lz4').length * 1.1);
  });

  it('round-trips inputs of every kind and size, across block boundaries', () => {
    const random = rng(15);
    const sizes = [0, 1, 4, 5, 12, 13, 14, 15, 16, 17, 255, 256, 270, 65535, 65536, 65537, 200_003];
    for (let k = 0; k < 300; k++) sizes.push(Math.floor(random() ** 3 * 150_000));
    for (const [i, n] of sizes.entries()) {
      const input = sample(random, n);
      const frame = lz4Compress(input);
      // never more than the raw blocks and their framing
      expect(frame.length).toBeLessThanOrEqual(7 + 4 * Math.max(1, Math.ceil(n / 65536)) + n + 4);
      const back = lz4Decompress(frame, n);
      if (!back.equals(input)) throw new Error(`round trip of ${n} bytes (case ${i}) differs`);
    }
  });

  it('compresses an input to the same frame whatever was compressed before it', () => {
    // The hash table is shared by every call: what an earlier input left in it must
    // not change a later frame (nor point a match at bytes of another block).
    const random = rng(77);
    const input = Buffer.concat([referenceInput(), sample(random, 70_000), referenceInput()]);
    const first = lz4Compress(input);
    for (let k = 0; k < 5; k++) lz4Compress(sample(random, 1 + Math.floor(random() * 140_000)));
    expect(lz4Compress(input).equals(first)).toBe(true);
    expect(lz4Decompress(first, input.length).equals(input)).toBe(true);
  });

  it('refuses every truncation and damage with an Lz4Error, never more than the limit', () => {
    const input = referenceInput();
    const frame = lz4Compress(input);
    for (let cut = 0; cut < frame.length; cut += cut < 64 ? 1 : 97) {
      expect(() => lz4Decompress(frame.subarray(0, cut), 1 << 20)).toThrow(Lz4Error);
    }
    const random = rng(99);
    for (let k = 0; k < 2000; k++) {
      const bad = Buffer.from(frame);
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++)
        bad[7 + Math.floor(random() * (bad.length - 7))] = Math.floor(random() * 256);
      try {
        const out = lz4Decompress(bad, input.length);
        expect(out.length).toBeLessThanOrEqual(input.length);
      } catch (err) {
        expect(err).toBeInstanceOf(Lz4Error);
      }
    }
  });

  it('refuses malformed frames with a message saying what is wrong', () => {
    const good = lz4Compress(Buffer.from('abcdefgh'.repeat(20)));
    const with_ = (at: number, byte: number) => {
      const b = Buffer.from(good);
      b[at] = byte;
      return b;
    };
    expect(() => lz4Decompress(Buffer.alloc(0), 100)).toThrow(/empty/);
    expect(() => lz4Decompress(Buffer.from('not lz4 at all'), 100)).toThrow(/not an lz4 frame/);
    expect(() => lz4Decompress(with_(6, good[6]! ^ 1), 1000)).toThrow(/descriptor checksum/);
    expect(() => lz4Decompress(with_(4, 0xa0), 1000)).toThrow(/version 2/);
    // A match before the block's start: token 0x00 (no literals, match 4), offset 1.
    const header = good.subarray(0, 7);
    const block = (bytes: number[]) => {
      const size = Buffer.alloc(4);
      size.writeUInt32LE(bytes.length, 0);
      return Buffer.concat([header, size, Buffer.from(bytes), Buffer.alloc(4)]);
    };
    expect(() => lz4Decompress(block([0x00, 0x01, 0x00]), 1000)).toThrow(/offset 1 out of range/);
    expect(() => lz4Decompress(block([0x10, 0x61, 0x00, 0x00]), 1000)).toThrow(/offset 0/);
    // A block size past the input.
    const over = Buffer.from(good);
    over.writeUInt32LE(60_000, 7);
    expect(() => lz4Decompress(over, 1000)).toThrow(/past the input/);
  });

  it('bounds the output: a bomb stops at the limit with Lz4TooLargeError', () => {
    const bomb = lz4Compress(Buffer.alloc(4 << 20));
    expect(bomb.length).toBeLessThan(20_000);
    expect(() => lz4Decompress(bomb, 1 << 20)).toThrow(Lz4TooLargeError);
    expect(lz4Decompress(bomb, 4 << 20).length).toBe(4 << 20);
    // One sequence whose match length claims far more than the limit: a run of 255s.
    const header = bomb.subarray(0, 7);
    const body = Buffer.from([0x1f, 0x61, 0x01, 0x00, ...Array(1000).fill(255), 0x00, 0x00]);
    const size = Buffer.alloc(4);
    size.writeUInt32LE(body.length, 0);
    const frame = Buffer.concat([header, size, body, Buffer.alloc(4)]);
    expect(() => lz4Decompress(frame, 100_000)).toThrow(Lz4TooLargeError);
  });
});
