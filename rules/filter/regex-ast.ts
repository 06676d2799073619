/**
 * A parser for JavaScript regular expressions, enough to reason about their backtracking:
 * every construct is read, but only what matters for that is kept (which characters an
 * atom matches, groups, alternations, quantifiers, lookarounds, backreferences). It runs
 * on patterns `new RegExp` has already accepted, so it does not re-validate them. The
 * patterns come from rule files (trusted), never from events.
 */

/** Sorted, disjoint, inclusive code point ranges: [lo0, hi0, lo1, hi1, ...]. */
export type CharSet = number[];

export type RegexNode =
  | { t: 'chars'; set: CharSet }
  | { t: 'seq'; items: RegexNode[] }
  | { t: 'alt'; branches: RegexNode[] }
  | { t: 'group'; body: RegexNode }
  | { t: 'look'; body: RegexNode; behind: boolean }
  | { t: 'assert' }
  | { t: 'backref' }
  | { t: 'quant'; body: RegexNode; min: number; max: number; start: number; end: number };

const MAX_CODE_POINT = 0x10ffff;
export const ALL: CharSet = [0, MAX_CODE_POINT];
const DIGIT: CharSet = [0x30, 0x39];
const WORD: CharSet = [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a];
const SPACE: CharSet = normalize([
  9, 13, 0x20, 0x20, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f, 0x202f,
  0x205f, 0x205f, 0x3000, 0x3000, 0xfeff, 0xfeff,
]);
const LINE_TERMINATORS: CharSet = [0x0a, 0x0a, 0x0d, 0x0d, 0x2028, 0x2029];

function normalize(ranges: number[]): CharSet {
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < ranges.length; i += 2) pairs.push([ranges[i]!, ranges[i + 1]!]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of pairs) {
    if (out.length > 0 && lo <= out[out.length - 1]! + 1)
      out[out.length - 1] = Math.max(out[out.length - 1]!, hi);
    else out.push(lo, hi);
  }
  return out;
}

export function union(a: CharSet, b: CharSet): CharSet {
  return normalize([...a, ...b]);
}

export function complement(a: CharSet): CharSet {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < a.length; i += 2) {
    if (a[i]! > next) out.push(next, a[i]! - 1);
    next = a[i + 1]! + 1;
  }
  if (next <= MAX_CODE_POINT) out.push(next, MAX_CODE_POINT);
  return out;
}

export function overlaps(a: CharSet, b: CharSet): boolean {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i + 1]! < b[j]!) i += 2;
    else if (b[j + 1]! < a[i]!) j += 2;
    else return true;
  }
  return false;
}

/** With the `i` flag, ASCII letters match both cases (others are left as they are). */
function foldCase(a: CharSet): CharSet {
  const extra: number[] = [];
  for (let i = 0; i < a.length; i += 2) {
    const lo = a[i]!;
    const hi = a[i + 1]!;
    for (const [from, to, shift] of [
      [0x41, 0x5a, 32],
      [0x61, 0x7a, -32],
    ] as const) {
      const l = Math.max(lo, from);
      const h = Math.min(hi, to);
      if (l <= h) extra.push(l + shift, h + shift);
    }
  }
  return extra.length > 0 ? union(a, extra) : a;
}

export function parseRegexAst(source: string, flags: string): RegexNode {
  return new Parser(source, flags).parse();
}

class Parser {
  private i = 0;
  private readonly unicode: boolean;
  private readonly ignoreCase: boolean;
  private readonly dotAll: boolean;
  private readonly groups: number;
  private readonly named: boolean;

  constructor(
    private readonly s: string,
    flags: string,
  ) {
    this.unicode = flags.includes('u') || flags.includes('v');
    this.ignoreCase = flags.includes('i');
    this.dotAll = flags.includes('s');
    const counted = countGroups(s);
    this.groups = counted.groups;
    this.named = counted.named;
  }

  parse(): RegexNode {
    const node = this.disjunction();
    if (this.i < this.s.length) throw new Error(`unexpected "${this.s[this.i]}" at ${this.i}`);
    return node;
  }

  private chars(set: CharSet): RegexNode {
    return { t: 'chars', set: this.ignoreCase ? foldCase(set) : set };
  }

  private disjunction(): RegexNode {
    const branches = [this.alternative()];
    while (this.s[this.i] === '|') {
      this.i++;
      branches.push(this.alternative());
    }
    return branches.length === 1 ? branches[0]! : { t: 'alt', branches };
  }

  private alternative(): RegexNode {
    const items: RegexNode[] = [];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') {
      const start = this.i;
      const atom = this.atom();
      items.push(this.quantifier(atom, start));
    }
    return { t: 'seq', items };
  }

  private quantifier(atom: RegexNode, start: number): RegexNode {
    const c = this.s[this.i];
    let min: number;
    let max: number;
    if (c === '*' || c === '+' || c === '?') {
      this.i++;
      [min, max] = c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      // Outside unicode mode a brace that is not a quantifier is a literal.
      if (!m) return atom;
      this.i += m[0].length;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
    } else return atom;
    if (this.s[this.i] === '?') this.i++;
    return { t: 'quant', body: atom, min, max, start, end: this.i };
  }

  private atom(): RegexNode {
    const c = this.s[this.i]!;
    switch (c) {
      case '^':
      case '$':
        this.i++;
        return { t: 'assert' };
      case '.':
        this.i++;
        return { t: 'chars', set: this.dotAll ? ALL : complement(LINE_TERMINATORS) };
      case '(':
        return this.group();
      case '[':
        return this.chars(this.charClass());
      case '\\':
        return this.escape();
      default: {
        const cp = this.s.codePointAt(this.i)!;
        this.i += this.unicode && cp > 0xffff ? 2 : 1;
        return this.chars([cp, cp]);
      }
    }
  }

  private group(): RegexNode {
    this.i++; // (
    let kind: 'group' | 'look' = 'group';
    let behind = false;
    if (this.s.startsWith('?:', this.i)) this.i += 2;
    else if (this.s.startsWith('?=', this.i) || this.s.startsWith('?!', this.i)) {
      kind = 'look';
      this.i += 2;
    } else if (this.s.startsWith('?<=', this.i) || this.s.startsWith('?<!', this.i)) {
      kind = 'look';
      behind = true;
      this.i += 3;
    } else if (this.s.startsWith('?<', this.i)) {
      this.i = this.s.indexOf('>', this.i) + 1;
    } else if (this.s[this.i] === '?') {
      // Modifiers such as (?i:...): read the body, conservatively as a plain group.
      const colon = this.s.indexOf(':', this.i);
      this.i = colon + 1;
    }
    const body = this.disjunction();
    if (this.s[this.i] !== ')') throw new Error(`unterminated group at ${this.i}`);
    this.i++;
    return kind === 'look' ? { t: 'look', body, behind } : { t: 'group', body };
  }

  private escape(): RegexNode {
    this.i++; // backslash
    const c = this.s[this.i]!;
    if (c === 'b' || c === 'B') {
      this.i++;
      return { t: 'assert' };
    }
    if (/[1-9]/.test(c)) {
      const m = /^\d+/.exec(this.s.slice(this.i))!;
      if (this.unicode || Number(m[0]) <= this.groups) {
        this.i += m[0].length;
        return { t: 'backref' };
      }
    }
    if (c === 'k' && (this.unicode || this.named)) {
      this.i = this.s.indexOf('>', this.i) + 1;
      return { t: 'backref' };
    }
    return this.chars(this.escapeSet());
  }

  /** The characters of an escape (after the backslash), in or outside a class. */
  private escapeSet(): CharSet {
    const c = this.s[this.i]!;
    this.i++;
    switch (c) {
      case 'd':
        return DIGIT;
      case 'D':
        return complement(DIGIT);
      case 'w':
        return WORD;
      case 'W':
        return complement(WORD);
      case 's':
        return SPACE;
      case 'S':
        return complement(SPACE);
      case 'p':
      case 'P':
        if (this.unicode && this.s[this.i] === '{') {
          this.i = this.s.indexOf('}', this.i) + 1;
          return ALL;
        }
        return [c.charCodeAt(0), c.charCodeAt(0)];
      case 'n':
        return [10, 10];
      case 't':
        return [9, 9];
      case 'r':
        return [13, 13];
      case 'v':
        return [11, 11];
      case 'f':
        return [12, 12];
      case '0':
        return [0, 0];
      case 'c': {
        const letter = this.s[this.i];
        if (letter && /[A-Za-z]/.test(letter)) {
          this.i++;
          const code = letter.charCodeAt(0) % 32;
          return [code, code];
        }
        return [0x5c, 0x5c];
      }
      case 'x': {
        const m = /^[0-9a-fA-F]{2}/.exec(this.s.slice(this.i));
        if (!m) return [0x78, 0x78];
        this.i += 2;
        const code = Number.parseInt(m[0], 16);
        return [code, code];
      }
      case 'u': {
        const braced = /^\{([0-9a-fA-F]+)\}/.exec(this.s.slice(this.i));
        if (this.unicode && braced) {
          this.i += braced[0].length;
          const code = Number.parseInt(braced[1]!, 16);
          return [code, code];
        }
        const m = /^[0-9a-fA-F]{4}/.exec(this.s.slice(this.i));
        if (!m) return [0x75, 0x75];
        this.i += 4;
        const code = Number.parseInt(m[0], 16);
        return [code, code];
      }
      default: {
        // Octal escapes (outside unicode mode) and identity escapes: the conservative
        // choice is the widest set the escape could mean for digits, itself otherwise.
        if (/[0-7]/.test(c)) {
          while (/[0-7]/.test(this.s[this.i] ?? '')) this.i++;
          return [0, 0xff];
        }
        const cp = this.s.codePointAt(this.i - 1)!;
        if (cp > 0xffff) this.i++;
        return [cp, cp];
      }
    }
  }

  private charClass(): CharSet {
    this.i++; // [
    let negate = false;
    if (this.s[this.i] === '^') {
      negate = true;
      this.i++;
    }
    let set: number[] = [];
    let depth = 0;
    while (this.i < this.s.length && (this.s[this.i] !== ']' || depth > 0)) {
      // The v flag's nested classes and set operations: widen to every character.
      if (this.s[this.i] === '[') {
        depth++;
        this.i++;
        set = [...ALL];
        continue;
      }
      if (this.s[this.i] === ']') {
        depth--;
        this.i++;
        continue;
      }
      const lo = this.classAtom();
      if (this.s[this.i] === '-' && this.s[this.i + 1] !== ']' && this.i + 1 < this.s.length) {
        this.i++;
        const hi = this.classAtom();
        if (lo.length === 2 && hi.length === 2 && lo[0] === lo[1] && hi[0] === hi[1])
          set.push(lo[0]!, hi[0]!);
        else set.push(...lo, ...hi, 0x2d, 0x2d);
      } else set.push(...lo);
    }
    this.i++; // ]
    const merged = normalize(set);
    return negate ? complement(merged) : merged;
  }

  private classAtom(): CharSet {
    if (this.s[this.i] === '\\') {
      this.i++;
      if (this.s[this.i] === 'b') {
        this.i++;
        return [8, 8];
      }
      if (this.s[this.i] === '-') {
        this.i++;
        return [0x2d, 0x2d];
      }
      return this.escapeSet();
    }
    const cp = this.s.codePointAt(this.i)!;
    this.i += this.unicode && cp > 0xffff ? 2 : 1;
    return [cp, cp];
  }
}

/** Capturing groups, and whether any is named (which makes `\k` a backreference). */
function countGroups(s: string): { groups: number; named: boolean } {
  let groups = 0;
  let named = false;
  let inClass = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') {
      if (s[i + 1] !== '?') groups++;
      else if (s[i + 2] === '<' && s[i + 3] !== '=' && s[i + 3] !== '!') {
        groups++;
        named = true;
      }
    }
  }
  return { groups, named };
}
