import { ALL, type CharSet, overlaps, parseRegexAst, type RegexNode, union } from './regex-ast.ts';

/**
 * Whether a `matches` pattern can backtrack catastrophically on text the sender writes.
 * JavaScript's engine backtracks; a pattern is refused at lint when one of these lets
 * an input of n characters cost more than about n² steps:
 *
 * - a repetition inside a repetition (`(a+)+`, `(a*)*`, `(.*a){3}`), unless both are
 *   bounded and the inner ones can split the outer's text at most 100 ways
 *   (`(\d{1,3}\.){3}`, 27 ways, is fine);
 * - a repetition of alternatives that can start with the same character (`(a|a)*`,
 *   `(a|ab)+`), or of something that can match the empty string (`(a?)*`);
 * - two unbounded repetitions in a row that can match the same characters, with nothing
 *   between them that the first cannot match too (`.*a.*b`, `a*a*b`, `\w+\w+x`): each way
 *   to split the text between them is tried; likewise an unbounded one beside bounded
 *   ones with more than 4 ways (`a{1,10}a*`), or bounded ones with more than 100;
 * - a backreference (no engine runs those in linear time);
 * - a lookaround that contains a repetition, or that is itself repeated.
 *
 * It errs on the side of refusing: `(\w+,)+` cannot blow up, but is refused like
 * `(\w+)+`. What remains is quadratic at worst (`a+b`
 * tried from every position), which the 8 KiB input limit of `matches` bounds.
 */
export function regexHazard(source: string, flags: string): string | undefined {
  let ast: RegexNode;
  try {
    ast = parseRegexAst(source, flags);
  } catch (err) {
    return `could not be analyzed (${(err as Error).message})`;
  }
  const problems: string[] = [];
  walk(ast, source, problems);
  return problems[0];
}

/** Ways bounded repetitions may split one stretch of text (`(\d{1,3}\.){3}`: 27). */
const MAX_WAYS = 100;
/** Ways a bounded repetition beside an unbounded one may add (`\d{1,3}\d*`: 3). */
const MAX_CHAIN_WAYS = 4;

function walk(node: RegexNode, src: string, out: string[]): void {
  switch (node.t) {
    case 'chars':
    case 'assert':
      return;
    case 'backref':
      out.push(
        'backreferences are not allowed: no engine can match them in linear time; match the text itself',
      );
      return;
    case 'seq':
      chain(node.items, src, out);
      for (const item of node.items) walk(item, src, out);
      return;
    case 'alt':
      for (const b of node.branches) walk(b, src, out);
      return;
    case 'group':
      walk(node.body, src, out);
      return;
    case 'look':
      // Without a repetition inside, a lookaround costs a bounded number of steps
      // wherever it runs (`(?:(?!x).)*` stays linear per start position).
      if (hasRepetition(node.body))
        out.push(
          'a lookaround that contains a repetition is not allowed: it rescans the text from every position; use a fixed-length lookaround',
        );
      return;
    case 'quant': {
      const text = src.slice(node.start, node.end);
      const body = node.body;
      if (body.t === 'look' || (body.t === 'group' && body.body.t === 'look')) {
        out.push(`"${text}": a repeated lookaround is not allowed`);
        return;
      }
      if (node.max > 1) {
        if (node.max === Infinity && nullable(body)) {
          out.push(
            `"${text}": repeats something that can match the empty string; make each repetition consume a character`,
          );
          return;
        }
        // Anything of variable length inside (`a+`, but also `a?`: `(a?a)*` splits
        // "aaaa" Fibonacci-many ways) lets iterations share out the same text.
        if (hasVariable(body) && !boundedFew(node)) {
          out.push(
            `"${text}": a repetition inside a repetition can split the same text in exponentially many ways (catastrophic backtracking); repeat only the innermost part, or bound both with small {m,n}`,
          );
          return;
        }
        if (some(body, (n) => n.t === 'alt' && alternativesOverlap(n.branches))) {
          out.push(
            `"${text}": repeated alternatives that can start with the same character can match the same text in exponentially many ways; make the alternatives start differently`,
          );
          return;
        }
      }
      walk(body, src, out);
      return;
    }
  }
}

/**
 * Repetitions in a row over overlapping characters, where whatever lies between can be
 * eaten by the first: every split of the text between them is tried. Two unbounded ones
 * make it cubic; a bounded one beside an unbounded one multiplies the quadratic cost by
 * its number of ways (`a{1,10}a*$` took 0.5 s of CPU on 8 KiB, `(?:a{1,10}){1,4}a*$`
 * 12 s on 500 characters).
 */
function chain(items: RegexNode[], src: string, out: string[]): void {
  let open: { set: CharSet; text: string; unbounded: boolean; ways: number } | undefined;
  for (const item of items) {
    if (item.t === 'assert' || item.t === 'look') continue;
    const letters = alphabet(item);
    const unbounded = hasUnbounded(item);
    const ways = unbounded ? 1 : waysOf(item);
    const variable = unbounded || ways > 1;
    const text = item.t === 'quant' ? src.slice(item.start, item.end) : 'a group';
    if (open && !overlaps(open.set, starts(item))) {
      // The open repetition cannot run into this item: a character it cannot match
      // separates them. Repetitions inside the item are checked on their own.
      if (variable && nullable(item))
        open = {
          set: union(open.set, letters),
          text: open.text,
          unbounded: open.unbounded || unbounded,
          ways: Math.min(open.ways * ways, MAX_WAYS + 1),
        };
      else if (variable) open = { set: letters, text, unbounded, ways };
      else if (!nullable(item)) open = undefined;
      continue;
    }
    if (!variable) {
      if (open && !overlaps(open.set, letters)) open = undefined;
      continue;
    }
    if (!open) {
      open = { set: letters, text, unbounded, ways };
      continue;
    }
    const product = open.ways * ways;
    if (open.unbounded && unbounded) {
      out.push(
        `"${open.text}" and "${text}" can match the same characters one after the other: the text between them is split every possible way (polynomial backtracking); make one exclude what the other matches (e.g. [^,]* instead of .*), or drop a leading .*`,
      );
      return;
    }
    if (product > (open.unbounded || unbounded ? MAX_CHAIN_WAYS : MAX_WAYS)) {
      out.push(
        `"${open.text}" and "${text}" can match the same characters one after the other in ${product > MAX_WAYS ? `more than ${MAX_WAYS}` : product} ways, and each is tried at every position; make one exclude what the other matches, or make the counts fixed`,
      );
      return;
    }
    open = {
      set: union(open.set, letters),
      text,
      unbounded: open.unbounded || unbounded,
      ways: Math.min(product, MAX_WAYS + 1),
    };
  }
}

/** Outer and inner repetitions all bounded, and few ways to split: `(\d{1,3}\.){3}`. */
function boundedFew(q: Extract<RegexNode, { t: 'quant' }>): boolean {
  if (q.max === Infinity || hasUnbounded(q.body)) return false;
  const ways = waysOf(q.body);
  return ways ** q.max <= MAX_WAYS;
}

/** An upper bound on the ways a bounded node can match one stretch of text. */
function waysOf(node: RegexNode): number {
  switch (node.t) {
    case 'seq':
      return node.items.reduce((w, i) => Math.min(w * waysOf(i), MAX_WAYS + 1), 1);
    case 'alt':
      return Math.min(
        node.branches.reduce((w, b) => w + waysOf(b), 0),
        MAX_WAYS + 1,
      );
    case 'group':
    case 'look':
      return waysOf(node.body);
    case 'quant': {
      let total = 0;
      const w = waysOf(node.body);
      for (let k = node.min; k <= node.max && total <= MAX_WAYS; k++) total += w ** k;
      return Math.min(total, MAX_WAYS + 1);
    }
    default:
      return 1;
  }
}

function hasVariable(node: RegexNode): boolean {
  return some(node, (n) => n.t === 'quant' && n.min !== n.max);
}

function hasRepetition(node: RegexNode): boolean {
  return some(node, (n) => n.t === 'quant' && n.max > 1);
}

function hasUnbounded(node: RegexNode): boolean {
  return some(node, (n) => n.t === 'quant' && n.max === Infinity);
}

function some(node: RegexNode, p: (n: RegexNode) => boolean): boolean {
  if (p(node)) return true;
  switch (node.t) {
    case 'seq':
      return node.items.some((i) => some(i, p));
    case 'alt':
      return node.branches.some((b) => some(b, p));
    case 'group':
    case 'look':
    case 'quant':
      return some(node.body, p);
    default:
      return false;
  }
}

function nullable(node: RegexNode): boolean {
  switch (node.t) {
    case 'chars':
      return false;
    case 'seq':
      return node.items.every(nullable);
    case 'alt':
      return node.branches.some(nullable);
    case 'group':
      return nullable(node.body);
    case 'quant':
      return node.min === 0 || nullable(node.body);
    default:
      // Assertions, lookarounds and backreferences can all match the empty string.
      return true;
  }
}

/** Every character the node could consume. */
function alphabet(node: RegexNode): CharSet {
  switch (node.t) {
    case 'chars':
      return node.set;
    case 'seq':
      return node.items.reduce<CharSet>((s, i) => union(s, alphabet(i)), []);
    case 'alt':
      return node.branches.reduce<CharSet>((s, b) => union(s, alphabet(b)), []);
    case 'group':
    case 'quant':
      return alphabet(node.body);
    case 'backref':
      return ALL;
    default:
      return [];
  }
}

/** Characters a match of the node can start with; everything when it can be empty. */
function first(node: RegexNode): CharSet {
  return nullable(node) ? ALL : starts(node);
}

/** Characters a non-empty match of the node can start with. */
function starts(node: RegexNode): CharSet {
  switch (node.t) {
    case 'chars':
      return node.set;
    case 'seq': {
      let set: CharSet = [];
      for (const item of node.items) {
        set = union(set, starts(item));
        if (!nullable(item)) break;
      }
      return set;
    }
    case 'alt':
      return node.branches.reduce<CharSet>((s, b) => union(s, starts(b)), []);
    case 'group':
    case 'quant':
      return starts(node.body);
    case 'backref':
      return ALL;
    default:
      return [];
  }
}

function alternativesOverlap(branches: RegexNode[]): boolean {
  const firsts = branches.map(first);
  for (let i = 0; i < firsts.length; i++)
    for (let j = i + 1; j < firsts.length; j++) if (overlaps(firsts[i]!, firsts[j]!)) return true;
  return false;
}
