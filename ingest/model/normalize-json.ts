import type { Level } from './event.ts';
import { writeNumber, writeString, writeValue } from './json-bytes.ts';
import {
  type ByteTable,
  DROPPED,
  ERROR_MESSAGE_SLOTS,
  ERROR_STACK_SLOTS,
  ERROR_TYPE_SLOTS,
  type Field,
  HOST_SLOTS,
  fieldOf,
  KEPT,
  keptAs,
  MESSAGE_SLOTS,
  METRIC_NAME,
  METRIC_TYPE,
  METRIC_VALUE,
  type Model,
  MAX_NESTING,
  modelOf,
  type NormalizeOptions,
  ROOT,
  ROOT_BYTES,
  SERVICE_SLOTS,
  SOURCE_COUNT,
  TIME_SLOTS,
} from './normalize.ts';

/**
 * normalize() for an NDJSON line read from its bytes and written out as the event's
 * JSON: byte for byte what `JSON.stringify(normalize(JSON.parse(line)))` gives, without
 * building the parsed object, the event or either string. Values kept as sent are
 * copied from the line when their text is already what JSON.stringify would write;
 * only the model's source fields are decoded. Ingest's cost per event was parsing,
 * rebuilding and re-encoding everything; this reads the line once.
 *
 * It is an accelerator, not a second definition: the model comes from the same
 * `modelOf` and the fields from the same tables as normalize(). A line it cannot prove
 * it reads exactly as JSON.parse would (duplicate keys, array-index keys, `__proto__`,
 * deep nesting, anything that is not plain JSON on one line) is left to the caller,
 * who normalizes it the object way, so invalid JSON gets JSON.parse's own message.
 */
export class JsonLineNormalizer {
  /** After `model`: the bus topic and partition key, as topicOf / keyOf would give. */
  metric = false;
  key = '';
  /** After `scan`: the line held no JSON at all, only blanks. */
  blank = false;

  private src: Buffer = EMPTY;
  /** `src` read four bytes at a time (scanString, keys compared, values copied). */
  private view: DataView = EMPTY_VIEW;
  /** The buffer last written into, and its view (values and names copied a word at a time). */
  private out: Buffer = EMPTY;
  private outView: DataView = EMPTY_VIEW;
  private m: Model | undefined;
  private pos = 0;
  /** This line's mark on the fields it meets (see `lineStamp`). */
  private stamp = 0;
  private depth = 0;
  private readonly found: unknown[] = new Array(SOURCE_COUNT).fill(undefined);
  /** Where a source field's value is in the line when its text is JSON.stringify's, else -1. */
  private readonly foundStart: number[] = new Array<number>(SOURCE_COUNT).fill(-1);
  private readonly foundEnd: number[] = new Array<number>(SOURCE_COUNT).fill(-1);
  /** The slots this line filled, to clear before the next (at most one a member). */
  private filled = 0;
  private readonly filledSlots: number[] = [];
  // The fields kept as sent, in order, each with its value: bytes of the line to copy
  // (start, end), or a value to write when the line's text is not canonical.
  private rest = 0;
  private readonly restFields: Field[] = [];
  private readonly restStarts: number[] = [];
  private readonly restEnds: number[] = [];
  private readonly restValues: unknown[] = [];
  // What scanString learnt of the string it scanned.
  private escaped = false;
  private nonAscii = false;
  private rootFirstKey: Field | undefined;

  /**
   * Reads the line starting at `start` up to its newline, which must be there
   * (`src[end] === 0x0a`). Returns the newline's position, or -1 when the line must go
   * the object way.
   */
  scan(src: Buffer, start: number): number {
    if (src !== this.src) {
      this.src = src;
      this.view = new DataView(src.buffer, src.byteOffset, src.length);
    }
    this.pos = start;
    this.rest = 0;
    this.depth = 0;
    this.stamp = ++lineStamp;
    // Only the slots the last line filled are cleared (a line fills a few of them).
    const found = this.found;
    for (let i = 0; i < this.filled; i++) {
      const slot = this.filledSlots[i]!;
      found[slot] = undefined;
      this.foundStart[slot] = -1;
    }
    this.filled = 0;
    this.skipBlanks();
    if (src[this.pos] === NEWLINE) {
      this.blank = true;
      return this.pos;
    }
    this.blank = false;
    if (src[this.pos] !== OPEN_BRACE || !this.object(ROOT_BYTES, undefined, undefined)) return -1;
    this.skipBlanks();
    return src[this.pos] === NEWLINE ? this.pos : -1;
  }

  /**
   * Works out the scanned line's model fields, topic and key. Throws what normalize()
   * throws for it (a NormalizeError for a metric without a numeric value).
   */
  model(options: NormalizeOptions): void {
    this.m = modelOf(this.found, options);
    this.metric = this.m.metricName !== undefined;
    this.key = this.m.service ?? this.m.host ?? '';
  }

  /**
   * Writes the event of the line last scanned and modelled into `out` from `at`, and
   * returns where it ends: past `out.length` when it needed more room (nothing is
   * written past the end; call again with a larger buffer). A JsonWriter, for
   * PublishBatch.addJson, which writes it straight into the batch.
   */
  readonly write = (out: Buffer, at: number): number => this.writeEvent(this.m!, out, at);

  /**
   * The event as build() lays it out: the model first, then the rest as sent. Names and
   * levels are constant bytes copied in whole (`bytesInto`); values come from the line.
   */
  private writeEvent(m: Model, out: Buffer, at: number): number {
    if (out !== this.out) {
      this.out = out;
      this.outView = new DataView(out.buffer, out.byteOffset, out.length);
    }
    const to = this.outView;
    let p = bytesInto(TIMESTAMP_NAME, to, at);
    p = this.modelValue(m.timestamp, TIME_SLOTS, out, p);
    if (m.message !== undefined)
      p = this.modelValue(m.message, MESSAGE_SLOTS, out, bytesInto(MESSAGE_NAME, to, p));
    if (m.level !== undefined) p = bytesInto(LEVEL_MEMBERS[m.level], to, p);
    if (m.service !== undefined)
      p = this.modelValue(m.service, SERVICE_SLOTS, out, bytesInto(SERVICE_NAME, to, p));
    if (m.host !== undefined)
      p = this.modelValue(m.host, HOST_SLOTS, out, bytesInto(HOST_NAME, to, p));
    if (m.errorType !== undefined)
      p = this.modelValue(m.errorType, ERROR_TYPE_SLOTS, out, bytesInto(ERROR_TYPE_NAME, to, p));
    if (m.errorMessage !== undefined)
      p = this.modelValue(
        m.errorMessage,
        ERROR_MESSAGE_SLOTS,
        out,
        bytesInto(ERROR_MESSAGE_NAME, to, p),
      );
    if (m.errorStack !== undefined)
      p = this.modelValue(m.errorStack, ERROR_STACK_SLOTS, out, bytesInto(ERROR_STACK_NAME, to, p));
    if (m.fingerprint !== undefined)
      p = writeString(m.fingerprint, out, bytesInto(FINGERPRINT_NAME, to, p));
    if (m.metricName !== undefined) {
      p = this.modelValue(m.metricName, METRIC_NAME_SLOTS, out, bytesInto(METRIC_NAME_NAME, to, p));
      p = this.modelValue(
        m.metricValue,
        METRIC_VALUE_SLOTS,
        out,
        bytesInto(METRIC_VALUE_NAME, to, p),
      );
      p = this.modelValue(
        m.metricType!,
        METRIC_TYPE_SLOTS,
        out,
        bytesInto(METRIC_TYPE_NAME, to, p),
      );
    }
    for (let i = 0; i < this.rest; i++) {
      const field = this.restFields[i]!;
      const as = field.how > KEPT ? keptAs(field, m) : field;
      if (as === undefined) continue;
      // The comma, the name and the colon, made once per field.
      p = bytesInto((as.nameJson ??= constant(`,${JSON.stringify(as.name)}:`)), to, p);
      const start = this.restStarts[i]!;
      if (start >= 0) p = this.copy(start, this.restEnds[i]!, out, p);
      else p = writeValue(this.restValues[i], out, p);
    }
    out[p++] = CLOSE_BRACE;
    return p;
  }

  /**
   * The line's bytes from `start` to `end` into `out` at `p` (the buffer writeEvent was
   * given): a long run in one native copy, a short one a 32-bit word at a time. Past the
   * end of `out` nothing is written and the position still advances (see bytesInto).
   */
  private copy(start: number, end: number, out: Buffer, p: number): number {
    const n = end - start;
    if (p + n > out.length) return p + n;
    if (n > 64) return p + this.src.copy(out, p, start, end);
    return copyBytes(this.view, start, end, this.outView, p);
  }

  /**
   * A model value: copied from the line when it is a source field's value as sent and
   * that text is JSON.stringify's (most are), written out otherwise.
   */
  private modelValue(
    value: string | number,
    slots: readonly number[],
    out: Buffer,
    p: number,
  ): number {
    for (const s of slots) {
      if (this.found[s] !== value) continue;
      const start = this.foundStart[s]!;
      if (start < 0) break;
      return this.copy(start, this.foundEnd[s]!, out, p);
    }
    return typeof value === 'string' ? writeString(value, out, p) : writeNumber(value, out, p);
  }

  /** An object's members, from its `{` to past its `}`. False: the line goes the object way. */
  private object(
    bytes: ByteTable,
    table: Map<string, Field> | undefined,
    owner: Field | undefined,
  ): boolean {
    const src = this.src;
    // Shippers send the same shapes: the key that came next last time usually does again.
    let expected = owner === undefined ? this.rootFirstKey : owner.firstKey;
    let previous: Field | undefined;
    if (++this.depth > MAX_DEPTH) return false;
    this.pos++;
    this.skipBlanks();
    if (src[this.pos] === CLOSE_BRACE) {
      this.pos++;
      this.depth--;
      return true;
    }
    for (;;) {
      if (src[this.pos] !== QUOTE) return false;
      const field = this.readKey(bytes, table, owner === undefined ? '' : owner.name, expected);
      if (field === undefined) return false;
      if (previous !== undefined) previous.nextKey = field;
      else if (owner !== undefined) owner.firstKey = field;
      else this.rootFirstKey = field;
      previous = field;
      expected = field.nextKey;
      this.skipBlanks();
      if (src[this.pos] !== COLON) return false;
      this.pos++;
      this.skipBlanks();
      if (!this.member(field)) return false;
      this.skipBlanks();
      const c = src[this.pos];
      this.pos++;
      if (c === COMMA) {
        this.skipBlanks();
        continue;
      }
      if (c === CLOSE_BRACE) {
        this.depth--;
        return true;
      }
      return false;
    }
  }

  /** A key, as its field; undefined for one the byte path does not take. */
  private readKey(
    bytes: ByteTable,
    table: Map<string, Field> | undefined,
    parent: string,
    expected: Field | undefined,
  ): Field | undefined {
    const src = this.src;
    const start = this.pos + 1;
    if (expected !== undefined) {
      const k = expected.keyBytes!;
      const length = k.byteLength;
      // The key and the quote after it are within the line's buffer before any is read.
      if (
        start + length < src.length &&
        src[start + length] === QUOTE &&
        sameBytes(k, 0, this.view, start, length)
      ) {
        this.pos = start + length + 1;
        return this.once(expected);
      }
    }
    let hash = 0;
    let i = start;
    for (;;) {
      const c = src[i]!;
      if (c === QUOTE) break;
      // Escaped or non-ASCII keys are rare: the object way reads them.
      if (c === BACKSLASH || c < 0x20 || c >= 0x80 || c === undefined) return undefined;
      hash = (Math.imul(hash, 31) + c) | 0;
      i++;
    }
    this.pos = i + 1;
    const length = i - start;
    let field: Field | undefined;
    const candidates = bytes.get(hash);
    if (candidates !== undefined) {
      for (const f of candidates) {
        const k = f.keyBytes!;
        if (k.byteLength === length && sameBytes(k, 0, this.view, start, length)) {
          field = f;
          break;
        }
      }
    }
    if (field === undefined) {
      const key = latin1(src, start, i);
      // Array-index keys come first in a parsed object whatever their place in the text,
      // and `__proto__` is special to JavaScript: the object way orders them as it must.
      if (key === '__proto__' || ARRAY_INDEX.test(key)) return undefined;
      // Keys whose hashes collide share a list, walked at every lookup: a sender could
      // make it long (the hash is not seeded); past a few, the object way reads the line.
      if (candidates !== undefined && candidates.length >= MAX_COLLISIONS) return undefined;
      field = fieldOf(table ?? ROOT, parent, key);
      if (!field.cached) return undefined;
      field.keyBytes = constant(key, 'latin1');
      if (candidates !== undefined) candidates.push(field);
      else bytes.set(hash, [field]);
    }
    return this.once(field);
  }

  /** A key twice in one object: JSON.parse keeps the last value at the first place. */
  private once(field: Field): Field | undefined {
    if (field.stamp === this.stamp) return undefined;
    field.stamp = this.stamp;
    return field;
  }

  /** A member's value: nested objects are walked, leaves go to the model or the rest. */
  private member(field: Field): boolean {
    const src = this.src;
    const c = src[this.pos]!;
    if (c === OPEN_BRACE) {
      if (field.children === undefined) field.children = new Map();
      return this.object((field.childBytes ??= new Map<number, Field[]>()), field.children, field);
    }
    const start = this.pos;
    let value: unknown;
    // Whether the line's text of the value is what JSON.stringify would write for it.
    let canonical = true;
    if (c === QUOTE) {
      const slot = field.slot;
      if (!this.scanString()) return false;
      canonical = !this.escaped && !this.nonAscii;
      if (slot >= 0 || !canonical)
        value = this.decodeString(start, this.pos, slot >= 0 && UNREPEATED[slot] === 0);
    } else if (c === MINUS || (c >= DIGIT_0 && c <= DIGIT_9)) {
      const integer = this.scanNumber();
      if (integer === undefined) return false;
      // Up to 15 digits an integer is exact and prints as written (but -0 prints as 0).
      canonical =
        integer && this.pos - start <= 15 && !(src[start] === MINUS && src[start + 1] === DIGIT_0);
      if (field.slot >= 0 || !canonical)
        value = canonical ? integerAt(src, start, this.pos) : Number(latin1(src, start, this.pos));
    } else if (c === OPEN_BRACKET) {
      if (!this.skipValue()) return false;
      // Arrays are kept as sent: as JSON.parse reads them and JSON.stringify writes them.
      try {
        value = JSON.parse(src.toString('utf8', start, this.pos));
      } catch {
        return false;
      }
      canonical = false;
    } else if (this.literal(TRUE)) value = true;
    else if (this.literal(FALSE)) value = false;
    else if (this.literal(NULL)) value = null;
    else return false;
    if (field.slot >= 0) {
      this.filledSlots[this.filled++] = field.slot;
      this.found[field.slot] = value;
      this.foundStart[field.slot] = canonical ? start : -1;
      this.foundEnd[field.slot] = this.pos;
    }
    if (field.how === DROPPED) return true;
    // A name twice (a flat and a nested spelling): the event keeps one property.
    if (field.same.stamp === this.stamp) return false;
    field.same.stamp = this.stamp;
    const r = this.rest++;
    this.restFields[r] = field;
    if (canonical) {
      this.restStarts[r] = start;
      this.restEnds[r] = this.pos;
    } else {
      this.restStarts[r] = -1;
      this.restValues[r] = value;
    }
    return true;
  }

  /**
   * From an opening quote to past the closing one; notes escapes and non-ASCII bytes.
   * Plain bytes are skipped a 32-bit word at a time; from the first word holding anything
   * else, one table lookup a byte (STRING_BYTE) finds it: the closing quote, an escape, a
   * raw control byte (the line's newline among them, so the scan never leaves the line)
   * or a non-ASCII byte. Linear whatever the bytes: each is read at most twice (in its
   * word, then alone), and after a non-ASCII byte the words start again past it.
   */
  private scanString(): boolean {
    const src = this.src;
    let i = this.pos + 1;
    let escaped = false;
    let nonAscii = false;
    const view = this.view;
    const words = src.length - 4;
    for (;;) {
      // Four bytes at a time while none of them is a quote, a backslash, a control byte
      // or a non-ASCII one (each test exact for "any byte of the word"), then byte by byte
      // from the word that has one.
      while (i <= words) {
        const w = view.getInt32(i, true);
        const q = w ^ 0x22222222;
        const b = w ^ 0x5c5c5c5c;
        if (
          (((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b) | w) &
          0x80808080
        )
          break;
        i += 4;
      }
      let kind: number;
      while ((kind = STRING_BYTE[src[i]!]!) === PLAIN) i++;
      if (kind === END) break;
      if (kind === HIGH) {
        nonAscii = true;
        i++;
        continue;
      }
      if (kind !== ESCAPE) return false; // a raw control byte, or no byte at all
      escaped = true;
      const e = src[i + 1];
      if (e === U) {
        for (let k = 2; k < 6; k++) if (!isHex(src[i + k]!)) return false;
        i += 6;
      } else if (
        e === QUOTE ||
        e === BACKSLASH ||
        e === SLASH ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      )
        i += 2;
      else return false;
    }
    this.pos = i + 1;
    this.escaped = escaped;
    this.nonAscii = nonAscii;
    return true;
  }

  /**
   * The string scanned from `start` to `end` (past its closing quote), as JSON.parse
   * reads it; a short ASCII one through the string table when `repeats` (see asciiString).
   */
  private decodeString(start: number, end: number, repeats: boolean): string {
    if (this.escaped) return JSON.parse(this.src.toString('utf8', start, end)) as string;
    if (this.nonAscii) return this.src.toString('utf8', start + 1, end - 1);
    return repeats
      ? asciiString(this.src, this.view, start + 1, end - 1)
      : latin1(this.src, start + 1, end - 1);
  }

  /** A JSON number. True: an integer; false: it has a fraction or exponent; undefined: not a number. */
  private scanNumber(): boolean | undefined {
    const src = this.src;
    let i = this.pos;
    if (src[i] === MINUS) i++;
    if (src[i] === DIGIT_0) i++;
    else if (isDigit(src[i]!)) while (isDigit(src[++i]!));
    else return undefined;
    let integer = true;
    if (src[i] === DOT) {
      integer = false;
      if (!isDigit(src[++i]!)) return undefined;
      while (isDigit(src[++i]!));
    }
    if (src[i] === 0x65 || src[i] === 0x45) {
      integer = false;
      i++;
      if (src[i] === PLUS || src[i] === MINUS) i++;
      if (!isDigit(src[i]!)) return undefined;
      while (isDigit(src[++i]!));
    }
    this.pos = i;
    return integer;
  }

  /** Any JSON value, checked and stepped over (for arrays, which are kept whole). */
  private skipValue(): boolean {
    const src = this.src;
    const c = src[this.pos]!;
    if (c === QUOTE) return this.scanString();
    if (c === MINUS || (c >= DIGIT_0 && c <= DIGIT_9)) return this.scanNumber() !== undefined;
    if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++this.depth > MAX_DEPTH) return false;
      const close = c === OPEN_BRACKET ? CLOSE_BRACKET : CLOSE_BRACE;
      this.pos++;
      this.skipBlanks();
      if (src[this.pos] === close) {
        this.pos++;
        this.depth--;
        return true;
      }
      for (;;) {
        if (close === CLOSE_BRACE) {
          if (src[this.pos] !== QUOTE || !this.scanString()) return false;
          this.skipBlanks();
          if (src[this.pos++] !== COLON) return false;
          this.skipBlanks();
        }
        if (!this.skipValue()) return false;
        this.skipBlanks();
        const d = src[this.pos++];
        if (d === COMMA) {
          this.skipBlanks();
          continue;
        }
        if (d === close) {
          this.depth--;
          return true;
        }
        return false;
      }
    }
    return this.literal(TRUE) || this.literal(FALSE) || this.literal(NULL);
  }

  private literal(word: Uint8Array): boolean {
    const src = this.src;
    for (let k = 0; k < word.length; k++) if (src[this.pos + k] !== word[k]) return false;
    this.pos += word.length;
    return true;
  }

  /** JSON's blanks but the newline, which ends the line. */
  private skipBlanks(): void {
    const src = this.src;
    let c = src[this.pos];
    while (c === SPACE || c === TAB || c === RETURN) c = src[++this.pos];
  }
}

/**
 * Numbers the lines read by every JsonLineNormalizer: fields are shared by all, so a
 * field marked by one reader's line must never look marked by another's.
 */
let lineStamp = 0;

/**
 * Source slots whose values do not repeat from line to line (times: an ISO timestamp is
 * new at every line): decoded without the string table, where they would cost a hash,
 * a miss, and the eviction of a value that does repeat.
 */
const UNREPEATED = new Uint8Array(SOURCE_COUNT);
for (const s of TIME_SLOTS) UNREPEATED[s] = 1;

const METRIC_NAME_SLOTS = [METRIC_NAME];
const METRIC_VALUE_SLOTS = [METRIC_VALUE];
const METRIC_TYPE_SLOTS = [METRIC_TYPE];

/**
 * Constant bytes (a member's name with its comma and colon) copied into `out` (`to`, its
 * view) at `p` a 32-bit word at a time: names are short (10 to 30 bytes), where a `set`
 * per name cost more in its call than in its copy. Like the other writers, nothing is
 * written past `out`'s end and the position still advances, so that the caller sees the
 * room the event needs.
 */
function bytesInto(bytes: DataView, to: DataView, p: number): number {
  const n = bytes.byteLength;
  if (p + n <= to.byteLength) copyBytes(bytes, 0, n, to, p);
  return p + n;
}

/**
 * Bytes `start` to `end` of `from` into `to` at `p`, four at a time, then the last one to
 * three; returns the position past them. The caller has checked that they fit (a
 * DataView throws past its end where a Buffer's store would be dropped). Linear in the
 * bytes copied.
 */
function copyBytes(from: DataView, start: number, end: number, to: DataView, p: number): number {
  let j = start;
  for (; j + 4 <= end; j += 4, p += 4) to.setInt32(p, from.getInt32(j, true), true);
  for (; j < end; j++, p++) to.setUint8(p, from.getUint8(j));
  return p;
}

/**
 * Whether `length` bytes of `a` from `aAt` equal those of `b` from `bAt`, compared four
 * at a time; the caller has checked that both ranges are within their views. Linear in
 * `length`.
 */
function sameBytes(a: DataView, aAt: number, b: DataView, bAt: number, length: number): boolean {
  let j = 0;
  for (; j + 4 <= length; j += 4)
    if (a.getInt32(aAt + j, true) !== b.getInt32(bAt + j, true)) return false;
  for (; j < length; j++) if (a.getUint8(aAt + j) !== b.getUint8(bAt + j)) return false;
  return true;
}

/** A string's bytes (UTF-8, or Latin-1 for keys read as such) as a view of their own. */
function constant(text: string, encoding: BufferEncoding = 'utf8'): DataView {
  const bytes = Buffer.from(text, encoding);
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
}

const TIMESTAMP_NAME = constant('{"@timestamp":');
const MESSAGE_NAME = constant(',"message":');
const SERVICE_NAME = constant(',"service.name":');
const HOST_NAME = constant(',"host.name":');
const ERROR_TYPE_NAME = constant(',"error.type":');
const ERROR_MESSAGE_NAME = constant(',"error.message":');
const ERROR_STACK_NAME = constant(',"error.stack_trace":');
const FINGERPRINT_NAME = constant(',"error.fingerprint":');
const METRIC_NAME_NAME = constant(',"metric.name":');
const METRIC_VALUE_NAME = constant(',"metric.value":');
const METRIC_TYPE_NAME = constant(',"metric.type":');
/** `,"log.level":"info"` and the others: a level is one of these six, written whole. */
const LEVEL_MEMBERS: Record<Level, DataView> = {
  trace: levelMember('trace'),
  debug: levelMember('debug'),
  info: levelMember('info'),
  warn: levelMember('warn'),
  error: levelMember('error'),
  fatal: levelMember('fatal'),
};

function levelMember(level: Level): DataView {
  return constant(`,"log.level":${JSON.stringify(level)}`);
}

/** An integer of at most 15 digits, which is exact: read without making a string. */
function integerAt(src: Buffer, start: number, end: number): number {
  const negative = src[start] === MINUS;
  let n = 0;
  for (let i = negative ? start + 1 : start; i < end; i++) n = n * 10 + (src[i]! - DIGIT_0);
  return negative ? -n : n;
}

/**
 * Bytes as Latin-1 text (ASCII here): Buffer's own decoder, called directly, without
 * toString's argument handling, which cost as much as decoding the short strings of a
 * log line. (Buffer.prototype.latin1Slice is what toString('latin1') calls.)
 */
function latin1(src: Buffer, start: number, end: number): string {
  return (src as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(
    start,
    end,
  );
}

/**
 * The model's source values repeat from line to line (a service's name, its hosts, a
 * message, a metric's name and type): a short ASCII one the line holds is looked up by
 * its bytes among the strings decoded before, and that string is handed back instead of
 * decoding a new one (a call into Buffer's decoder and a string to collect per value,
 * three to five per event).
 *
 * Bounded whatever the senders write: a direct-mapped table of STRING_SLOTS strings of at
 * most STRING_MAX_BYTES each (at most ~0.4 MB), with each string's bytes beside it in one
 * buffer of STRING_SLOTS × STRING_MAX_BYTES (192 KiB), a slot overwritten by the next
 * value that hashes to it, no chains: values chosen to collide only make misses, each
 * costing a decode as before. Linear in the value's bytes (one hash and one comparison,
 * each four bytes at a time, and a copy of the bytes on a miss).
 */
function asciiString(src: Buffer, view: DataView, start: number, end: number): string {
  const length = end - start;
  if (length > STRING_MAX_BYTES) return latin1(src, start, end);
  const slot = stringSlot(src, view, start, end);
  const known = strings[slot]!;
  const at = slot * STRING_MAX_BYTES;
  if (known.length === length && sameBytes(stringBytesView, at, view, start, length)) return known;
  const decoded = latin1(src, start, end);
  strings[slot] = decoded;
  for (let j = 0; j < length; j++) stringBytes[at + j] = src[start + j]!;
  return decoded;
}

/** The string table's slot for bytes `start` to `end` (FNV-1a over words, then bytes). */
function stringSlot(src: Buffer, view: DataView, start: number, end: number): number {
  let h = end - start;
  let i = start;
  for (; i + 4 <= end; i += 4) h = Math.imul(h ^ view.getInt32(i, true), FNV_PRIME);
  for (; i < end; i++) h = Math.imul(h ^ src[i]!, FNV_PRIME);
  // The top bits (FNV's best mixed), as an integer: `%` of an unsigned 32-bit value is
  // a floating-point remainder in V8.
  return h >>> (32 - STRING_SLOT_BITS);
}

/** For tests: the string table's slot of an ASCII value, to find values that share one. */
export function stringSlotOf(value: string): number {
  const bytes = Buffer.from(value, 'latin1');
  return stringSlot(
    bytes,
    new DataView(bytes.buffer, bytes.byteOffset, bytes.length),
    0,
    bytes.length,
  );
}

const FNV_PRIME = 0x01000193;
const STRING_SLOT_BITS = 12;
const STRING_SLOTS = 1 << STRING_SLOT_BITS;
const STRING_MAX_BYTES = 48;
/** asciiString's table ('' in a slot not filled yet, which no lookup of length > 0 matches). */
const strings: string[] = new Array<string>(STRING_SLOTS).fill('');
/** The bytes of each slot's string (a slot's string of length n: its first n bytes). */
const stringBytes = Buffer.alloc(STRING_SLOTS * STRING_MAX_BYTES);
const stringBytesView = new DataView(
  stringBytes.buffer,
  stringBytes.byteOffset,
  stringBytes.byteLength,
);

/** What a byte is inside a JSON string (scanString): one lookup instead of four comparisons. */
const PLAIN = 0;
const END = 1;
const ESCAPE = 2;
const CONTROL = 3;
const HIGH = 4;
const STRING_BYTE = new Uint8Array(256);
for (let c = 0; c < 256; c++)
  STRING_BYTE[c] =
    c === 0x22 ? END : c === 0x5c ? ESCAPE : c < 0x20 ? CONTROL : c >= 0x80 ? HIGH : PLAIN;

const isDigit = (c: number) => c >= DIGIT_0 && c <= DIGIT_9;
const isHex = (c: number) =>
  (c >= DIGIT_0 && c <= DIGIT_9) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

const EMPTY = Buffer.alloc(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer, EMPTY.byteOffset, 0);
/** Nesting the byte path reads (objects and arrays); deeper lines go the object way. */
const MAX_DEPTH = MAX_NESTING;
const MAX_COLLISIONS = 8;
const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;
const NEWLINE = 0x0a;
const SPACE = 0x20;
const TAB = 0x09;
const RETURN = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SLASH = 0x2f;
const U = 0x75;
const COMMA = 0x2c;
const COLON = 0x3a;
const DOT = 0x2e;
const PLUS = 0x2b;
const MINUS = 0x2d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');
