/**
 * The checkpoint store's encoding of one entry (docs/architecture.md#checkpoints): plain
 * data (what RuleRunner.entry gives: objects, arrays, strings, numbers, booleans, null,
 * undefined) in a compact tagged form written into one scratch buffer, with no native
 * object per value. `node:v8` serialize and deserialize each make a native object that
 * only a garbage collection frees; at 20,000 entries a checkpoint that made GC pauses of
 * 30-90 ms on a 1 M-key heap (bench/README.md "Snapshots"). A value outside plain data (a
 * class instance, a Map, a sparse array, nesting past MAX_DEPTH) is written with
 * `node:v8` serialize instead, whose bytes begin with 0xFF: both kinds are read.
 *
 * A checkpoint appends its entries into one buffer (`EntryBatch`): the ids and encoded
 * values of all entries taken between two writes, back to back, with their spans in a
 * typed array, so taking an entry makes no array, no Buffer and no copy of its own
 * (V8's incremental marking runs in steps on the loop, driven by what is allocated: at
 * 1.1 M keys the allocation per entry held a full checkpoint's slices past 5 ms).
 *
 * Layout: FORMAT_TAG, then one value: a tag byte and its body. Numbers are int32 or
 * float64 (±Infinity, NaN and -0 kept); strings are Latin-1 when every code unit is below
 * 256, else UTF-16 code units (lone surrogates kept); lengths are base-128 varints. Encoding and
 * decoding are linear in the bytes; a decoder refuses a length past the bytes left, so a
 * damaged row cannot make it allocate more than the row's size.
 */
import { deserialize, serialize } from 'node:v8';
import type { EntryWriter } from '../rules/runner.ts';

/**
 * The size of a stored part of a large value (checkpoint-store.ts), and of the pieces an
 * entry encoded in steps (EntryBatch.beginParts) is cut into as it is encoded.
 */
export const PART_BYTES = 64 * 1024;

const FORMAT_TAG = 0xd1;
/** Nesting past this is written by `node:v8` (events are bounded well below at ingest). */
const MAX_DEPTH = 256;
/** The scratch buffer is kept up to this size between entries; a larger one is dropped. */
const SCRATCH_KEEP = 1 << 20;

const UNDEFINED = 0;
const NULL = 1;
const FALSE = 2;
const TRUE = 3;
const INT32 = 4;
const FLOAT64 = 5;
const LATIN1 = 6;
const UTF16 = 7;
const ARRAY = 8;
const OBJECT = 9;

class NotPlain extends Error {}
const notPlain = new NotPlain();

/** encodeValue's buffer, kept between entries up to SCRATCH_KEEP. */
let own: Buffer = Buffer.allocUnsafe(4096);
/** The buffer being written (encodeValue's, or an EntryBatch's) and the next byte in it. */
let scratch: Buffer = own;
let at = 0;

function room(n: number): void {
  if (at + n <= scratch.length) return;
  let size = scratch.length * 2;
  while (size < at + n) size *= 2;
  const next = Buffer.allocUnsafe(size);
  scratch.copy(next, 0, 0, at);
  scratch = next;
}

/** A length as a base-128 varint: one byte below 128, at most five. */
function writeLength(n: number): void {
  room(5);
  while (n >= 0x80) {
    scratch[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  scratch[at++] = n;
}

/** A code unit above 0xFF: the string is written as UTF-16. */
const WIDE = /[\u0100-\uffff]/;
/**
 * Strings of at least this many code units are tested by WIDE, shorter ones by a loop. The
 * loop over `charCodeAt` took 22-27 ms for 10,000 strings of 1,000 Latin-1 characters (a
 * cardinality key a sender filled), the expression 0.6-10 ms (V8 knows a string held as
 * one-byte has no unit above 0xFF); for an id of a few characters the loop is the cheaper.
 */
const SCAN_BY_LOOP = 64;

function writeString(s: string): void {
  const n = s.length;
  let wide = false;
  if (n >= SCAN_BY_LOOP) wide = WIDE.test(s);
  else
    for (let i = 0; i < n; i++) {
      if (s.charCodeAt(i) > 0xff) {
        wide = true;
        break;
      }
    }
  room(1);
  scratch[at++] = wide ? UTF16 : LATIN1;
  writeLength(n);
  room(wide ? 2 * n : n);
  at += scratch.write(s, at, wide ? 'utf16le' : 'latin1');
}

function writeNumber(v: number): void {
  if ((v | 0) === v && !Object.is(v, -0)) {
    room(5);
    scratch[at] = INT32;
    scratch.writeInt32LE(v, at + 1);
    at += 5;
  } else {
    room(9);
    scratch[at] = FLOAT64;
    scratch.writeDoubleLE(v, at + 1);
    at += 9;
  }
}

/**
 * An item of an array or object: a number written here, not passed on to writeValue,
 * is never boxed (an array of timestamps holds raw doubles; passed on, each became a
 * heap number).
 */
function writeItem(v: unknown, depth: number): void {
  if (typeof v === 'number') writeNumber(v);
  else writeValue(v, depth);
}

function writeValue(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      writeString(v);
      return;
    case 'number':
      writeNumber(v);
      return;
    case 'boolean':
      room(1);
      scratch[at++] = v ? TRUE : FALSE;
      return;
    case 'undefined':
      room(1);
      scratch[at++] = UNDEFINED;
      return;
    case 'object':
      break;
    default:
      throw notPlain;
  }
  if (v === null) {
    room(1);
    scratch[at++] = NULL;
    return;
  }
  if (depth >= MAX_DEPTH) throw notPlain;
  if (Array.isArray(v)) {
    if (Object.getPrototypeOf(v) !== Array.prototype) throw notPlain;
    const n = v.length;
    room(1);
    scratch[at++] = ARRAY;
    writeLength(n);
    for (let i = 0; i < n; i++) {
      if (!(i in v)) throw notPlain; // a hole
      writeItem(v[i], depth + 1);
    }
    return;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) throw notPlain;
  // Own enumerable keys in Object.keys' order, without its array per object: `for...in`
  // walks the object's enumeration cache. It would also walk enumerable keys inherited
  // from Object.prototype (none unless something added one: then Object.keys' way).
  if (proto !== null && inherited()) {
    const keys = Object.keys(v);
    room(1);
    scratch[at++] = OBJECT;
    writeLength(keys.length);
    for (const k of keys) {
      writeString(k);
      writeValue((v as Record<string, unknown>)[k], depth + 1);
    }
    return;
  }
  let n = 0;
  for (const _ in v) n++;
  room(1);
  scratch[at++] = OBJECT;
  writeLength(n);
  for (const k in v) {
    writeString(k);
    writeItem((v as Record<string, unknown>)[k], depth + 1);
  }
}

const EMPTY = {};
/** Whether Object.prototype (or what it inherits) has an enumerable key. */
function inherited(): boolean {
  for (const _ in EMPTY) return true;
  return false;
}

/** One entry's bytes (a copy: the scratch buffer is reused). */
export function encodeValue(value: unknown): Uint8Array {
  scratch = own;
  at = 0;
  try {
    writeTagged(value);
  } finally {
    own = scratch;
  }
  // Small copies come from Node's shared pool: no native object per entry.
  const out = Buffer.allocUnsafe(at);
  scratch.copy(out, 0, 0, at);
  if (own.length > SCRATCH_KEEP) own = Buffer.allocUnsafe(4096);
  scratch = own;
  return out;
}

/** FORMAT_TAG and the value from `at`, or `node:v8`'s bytes when it is not plain data. */
function writeTagged(value: unknown): void {
  const start = at;
  room(1);
  scratch[at++] = FORMAT_TAG;
  try {
    writeValue(value, 0);
  } catch (err) {
    if (err !== notPlain) throw err;
    const bytes = serialize(value);
    at = start;
    room(bytes.length);
    at += bytes.copy(scratch, at);
  }
}

/** What EntryBatch.putEntry takes an entry from (a RuleRunner). */
export interface EntrySource {
  writeEntry(id: string, w: EntryWriter): boolean;
  entry(id: string): unknown;
  /** writeEntry's bytes in steps (RuleRunner.writeEntryParts), for EntryBatch.beginParts. */
  writeEntryParts?(id: string, w: EntryWriter): Generator<void, boolean>;
}

/** A value encoded in steps: its pieces of PART_BYTES (the last shorter) and its length. */
export interface PartedValue {
  parts: Buffer[];
  size: number;
}

/** The encoder's parts, for EntrySource.writeEntry: the bytes writeValue gives the whole. */
const writer: EntryWriter = {
  object(fields, depth) {
    if (depth >= MAX_DEPTH) throw notPlain;
    room(1);
    scratch[at++] = OBJECT;
    writeLength(fields);
  },
  array(items, depth) {
    if (depth >= MAX_DEPTH) throw notPlain;
    room(1);
    scratch[at++] = ARRAY;
    writeLength(items);
  },
  key: writeString,
  number: writeNumber,
  value: writeItem,
  bytes: () => at,
};

/**
 * FORMAT_TAG and `source`'s entry from `at`, written in parts; nothing when it holds
 * nothing under `id`. What is not plain data: the whole entry as writeTagged writes it.
 */
function writeFrom(source: EntrySource, id: string): void {
  const start = at;
  room(1);
  scratch[at++] = FORMAT_TAG;
  try {
    if (!source.writeEntry(id, writer)) at = start;
  } catch (err) {
    if (err !== notPlain) throw err;
    at = start;
    const entry = source.entry(id);
    if (entry !== undefined) writeTagged(entry);
  }
}

/** An entry being encoded in steps (EntryBatch.beginParts). */
interface InParts {
  rule: string;
  id: string;
  source: EntrySource;
  steps: Generator<void, boolean>;
  /** The bytes not yet cut into a piece (less than PART_BYTES, and the last item written). */
  buf: Buffer;
  at: number;
  /**
   * The pieces cut so far: the entry's encoded value, as the batch held a whole entry
   * before (bounded by what the rule holds under one key: its kind's caps).
   */
  parts: Buffer[];
  size: number;
}

/**
 * Entries appended back to back: row i's id (its UTF-16 code units, as the store keys it)
 * runs from span 3i to span 3i+1, its encoded value (encodeValue's bytes) from there to
 * span 3i+2; an empty value is none (the rule holds nothing under the id any more). A
 * checkpoint fills one between two writes of its rows and clears it after each: it holds
 * the entries taken in that time (each entry at most once per checkpoint), and keeps at
 * most SCRATCH_KEEP bytes once cleared.
 */
export class EntryBatch {
  bytes: Buffer = Buffer.allocUnsafe(4096);
  /** Bytes used in `bytes`. */
  end = 0;
  spans = new Float64Array(3 * 64);
  /** Each row's rule (names the engine holds; no string is made per row). */
  readonly rules: string[] = [];
  rows = 0;
  /**
   * Rows whose value was encoded in steps (beginParts): that value, in pieces, instead of
   * the bytes of `bytes` (its span there is empty). Emptied with the rows; unset for others.
   */
  readonly parted: Array<PartedValue | undefined> = [];
  /** Bytes encoded into this batch since it was made (rows and steps): the store's accounting. */
  encoded = 0;
  /** The entry being encoded in steps, if one is. */
  private inParts: InParts | undefined;

  /**
   * Begins `source`'s entry under `id`, to be encoded in steps (stepParts), each about
   * PART_BYTES of it; the row is appended once its last step is done. Until then the
   * entry must not change (finishParts first). One at a time.
   */
  beginParts(rule: string, id: string, source: EntrySource): void {
    if (this.inParts !== undefined) throw new Error('an entry is being encoded in steps already');
    const buf = Buffer.allocUnsafe(2 * PART_BYTES);
    buf[0] = FORMAT_TAG;
    this.inParts = {
      rule,
      id,
      source,
      steps: source.writeEntryParts!(id, writer),
      buf,
      at: 1,
      parts: [],
      size: 0,
    };
  }

  /** Whether an entry is being encoded in steps. */
  get inStep(): boolean {
    return this.inParts !== undefined;
  }

  /**
   * One step of the entry begun (about PART_BYTES of it, and one item); true once it is
   * done and its row appended.
   */
  stepParts(): boolean {
    const p = this.inParts;
    if (p === undefined) return true;
    scratch = p.buf;
    at = p.at;
    let done: boolean;
    let held = true;
    const from = at;
    try {
      const r = p.steps.next();
      done = r.done === true;
      if (done) held = r.value as boolean;
    } catch (err) {
      if (err !== notPlain) throw err;
      // Not plain data: the whole entry as writeTagged writes it, in one (as putEntry).
      at = 0;
      p.parts.length = 0;
      p.size = 0;
      const entry = p.source.entry(p.id);
      if (entry !== undefined) writeTagged(entry);
      else held = false;
      done = true;
    } finally {
      p.buf = scratch;
      p.at = at;
      scratch = own;
    }
    this.encoded += Math.max(0, p.at - from);
    this.cut(p, done);
    if (!done) return false;
    this.inParts = undefined;
    this.appendParted(p, held);
    return true;
  }

  /** The rest of the entry begun, at once (it is about to change); its row appended. */
  finishParts(): void {
    while (!this.stepParts());
  }

  /** Drops the entry begun (its capture abandoned). */
  abortParts(): void {
    this.inParts = undefined;
  }

  /**
   * Cuts the bytes encoded into pieces of PART_BYTES, the rest moved to the buffer's start
   * (less than a piece and one item); all of them once done.
   */
  private cut(p: InParts, done: boolean): void {
    let from = 0;
    while (p.at - from >= PART_BYTES || (done && p.at > from)) {
      const n = Math.min(PART_BYTES, p.at - from);
      p.parts.push(Buffer.from(p.buf.subarray(from, from + n)));
      p.size += n;
      from += n;
    }
    if (from > 0) {
      p.buf.copy(p.buf, 0, from, p.at);
      p.at -= from;
    }
    // A buffer grown for one long item is not kept.
    if (p.buf.length > 4 * PART_BYTES && p.at < PART_BYTES) {
      const small = Buffer.allocUnsafe(2 * PART_BYTES);
      p.buf.copy(small, 0, 0, p.at);
      p.buf = small;
    }
  }

  /** The row of an entry encoded in steps: its id here, its value in pieces (none: a deletion). */
  private appendParted(p: InParts, held: boolean): void {
    const r = this.rows;
    this.append(p.rule, p.id, undefined, undefined);
    this.parted[r] = held ? { parts: p.parts, size: p.size } : undefined;
  }

  /** Appends an entry, encoded now (its data may share arrays with the live state). */
  put(rule: string, id: string, entry: unknown): void {
    this.append(rule, id, entry, undefined);
  }

  /**
   * Appends `source.entry(id)`, written by `source.writeEntry` without making it (the
   * same bytes as `put`'s; what is not plain data is encoded from `entry(id)` as `put`
   * does).
   */
  putEntry(rule: string, id: string, source: EntrySource): void {
    this.append(rule, id, undefined, source);
  }

  private append(rule: string, id: string, entry: unknown, source: EntrySource | undefined): void {
    const r = this.rows;
    const from = this.end;
    if (3 * r + 3 > this.spans.length) {
      const spans = new Float64Array(2 * this.spans.length);
      spans.set(this.spans);
      this.spans = spans;
    }
    const spans = this.spans;
    scratch = this.bytes;
    at = this.end;
    try {
      spans[3 * r] = at;
      room(2 * id.length);
      at += scratch.write(id, at, 'utf16le');
      spans[3 * r + 1] = at;
      if (source !== undefined) writeFrom(source, id);
      else if (entry !== undefined) writeTagged(entry);
      spans[3 * r + 2] = at;
    } finally {
      this.bytes = scratch;
      scratch = own;
    }
    this.end = at;
    this.encoded += at - from;
    this.rules[r] = rule;
    this.rows = r + 1;
  }

  /** Empties the batch, dropping a buffer grown past SCRATCH_KEEP. */
  clear(): void {
    this.rows = 0;
    this.end = 0;
    if (this.rules.length > 4096) this.rules.length = 0;
    this.parted.length = 0;
    if (this.bytes.length > SCRATCH_KEEP) this.bytes = Buffer.allocUnsafe(4096);
    if (this.spans.byteLength > SCRATCH_KEEP) this.spans = new Float64Array(3 * 64);
  }
}

class Reader {
  private pos = 1;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (n > this.buf.length - this.pos) throw new Error('checkpoint entry: truncated');
  }

  private length(): number {
    let n = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      this.need(1);
      const b = this.buf[this.pos++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
    throw new Error('checkpoint entry: bad length');
  }

  string(tag: number): string {
    const n = this.length();
    const bytes = tag === UTF16 ? 2 * n : n;
    this.need(bytes);
    const s = this.buf.toString(tag === UTF16 ? 'utf16le' : 'latin1', this.pos, this.pos + bytes);
    this.pos += bytes;
    return s;
  }

  value(depth: number): unknown {
    this.need(1);
    const tag = this.buf[this.pos++]!;
    switch (tag) {
      case UNDEFINED:
        return undefined;
      case NULL:
        return null;
      case FALSE:
        return false;
      case TRUE:
        return true;
      case INT32: {
        this.need(4);
        const v = this.buf.readInt32LE(this.pos);
        this.pos += 4;
        return v;
      }
      case FLOAT64: {
        this.need(8);
        const v = this.buf.readDoubleLE(this.pos);
        this.pos += 8;
        return v;
      }
      case LATIN1:
      case UTF16:
        return this.string(tag);
      case ARRAY: {
        if (depth >= MAX_DEPTH) break;
        const n = this.length();
        this.need(n); // each item is at least a byte
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
        return out;
      }
      case OBJECT: {
        if (depth >= MAX_DEPTH) break;
        const n = this.length();
        this.need(2 * n); // each key and value at least a byte
        const out: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          this.need(1);
          const kt = this.buf[this.pos++]!;
          if (kt !== LATIN1 && kt !== UTF16) throw new Error(`checkpoint entry: bad key tag ${kt}`);
          const key = this.string(kt);
          const v = this.value(depth + 1);
          // An own property, as JSON.parse makes it: never the prototype.
          if (key === '__proto__')
            Object.defineProperty(out, key, {
              value: v,
              writable: true,
              enumerable: true,
              configurable: true,
            });
          else out[key] = v;
        }
        return out;
      }
    }
    throw new Error(`checkpoint entry: bad tag ${tag}`);
  }

  done(): boolean {
    return this.pos === this.buf.length;
  }
}

/** Reads what encodeValue wrote (or `node:v8` serialize, in stores written before). */
export function decodeValue(bytes: Uint8Array): unknown {
  const buf = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length === 0 || buf[0] !== FORMAT_TAG) return deserialize(buf);
  const r = new Reader(buf);
  const v = r.value(0);
  if (!r.done()) throw new Error('checkpoint entry: bytes past the value');
  return v;
}
