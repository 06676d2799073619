/**
 * Reads a stack trace as printed by the JVM, V8 (Node.js), CPython, Go, .NET and Ruby into
 * exception sections and frames, for fingerprints (docs/fingerprint.md).
 *
 * The text is attacker-written, so parsing is one pass over at most MAX_STACK_CHARS
 * characters, line by line, with string searches and anchored patterns that cannot
 * backtrack over more than the token they match: total time is linear in the input.
 * Lines longer than MAX_LINE_CHARS are not frames. At most MAX_SECTIONS sections and,
 * in each, the MAX_FRAMES frames nearest the throw are kept.
 */

export type Runtime = 'jvm' | 'v8' | 'python' | 'go' | 'dotnet' | 'ruby';

export interface Frame {
  /** The function as printed, without its arguments ("com.acme.Pay.charge", "handler"). */
  fn: string;
  /** The file or location as printed, without line and column ("Pay.java", "/app/pay.js"). */
  file: string;
  runtime: Runtime;
}

export interface Section {
  /** The exception type this section names ("java.lang.IllegalStateException"), if any. */
  type: string | undefined;
  frames: Frame[];
}

export interface ParsedStack {
  /** The type of the error that was raised: the first section's, or Python's last. */
  type: string | undefined;
  /** The frames of every section, in print order. */
  frames: Frame[];
  /** One per exception of a chain (Java "Caused by:", Python chained tracebacks, .NET inner). */
  sections: Section[];
  /** The index in `sections` of the error that was raised (whose type is `type`). */
  primary: number;
}

/** Characters of a stack read at all; the rest is ignored (a 1,024-frame JVM overflow is ~80 KB). */
export const MAX_STACK_CHARS = 64 * 1024;
/** A longer line is not a frame (a frame line is rarely over 300 characters). */
export const MAX_LINE_CHARS = 4096;
/** Frames kept per section: the ones nearest the throw. */
export const MAX_FRAMES = 64;
/** Sections kept (Java causes, Python chained tracebacks, .NET inner exceptions). */
export const MAX_SECTIONS = 8;
/** Exception types are cut to this many characters. */
export const MAX_TYPE_CHARS = 256;

/** The part of `stack` that is read: the first MAX_STACK_CHARS, without a line cut in two. */
export function capStack(stack: string): string {
  if (stack.length <= MAX_STACK_CHARS) return stack;
  const cut = stack.lastIndexOf('\n', MAX_STACK_CHARS);
  return stack.slice(0, cut > 0 ? cut : MAX_STACK_CHARS);
}

// "java.lang.IllegalStateException: x", "Error [ERR_X]: x", "ActiveRecord::RecordNotFound: x",
// 'Exception in thread "main" java.lang.X: y', "RuntimeError (x):". Anchored, and each
// quantifier stops at a character the next token cannot start with: no backtracking.
const TYPE =
  /^(?:Exception in thread "[^"]*" )?([A-Za-z_$][\w$.]*(?:::[A-Za-z_$][\w$.]*)*(?: \[[\w-]+\])?)(:| \(|$)/;
const TYPE_WORD = /(?:Error|Exception|Interrupt|Exit|Iteration|Failure)$/;
const PY_TYPE = /^([A-Za-z_][\w.]*)(?::|$)/;
const JVM_SOURCE = /^[\w$.-]+\.(?:java|kt|kts|scala|groovy|clj|cljc)$/;

/** "TypeError: x" → "TypeError"; a bare word only when it looks like a type. */
export function exceptionType(head: string): string | undefined {
  const line = head.length > MAX_LINE_CHARS ? head.slice(0, MAX_LINE_CHARS) : head;
  if (line.startsWith('panic: ')) return 'panic'; // Go
  if (line.startsWith('fatal error: ')) return 'fatal error'; // Go runtime
  const m = TYPE.exec(line);
  if (!m) return undefined;
  if (m[2] !== ':' && !TYPE_WORD.test(m[1]!)) return undefined;
  return m[1]!.slice(0, MAX_TYPE_CHARS);
}

function isDigits(s: string, from: number, to = s.length): boolean {
  if (from >= to) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** "/app/x.go:42 +0x1d" (after the tab) → "/app/x.go", else undefined. */
function goFile(line: string | undefined): string | undefined {
  if (line === undefined || line.charCodeAt(0) !== 9 || line.length > MAX_LINE_CHARS) return;
  let s = line.slice(1).trimEnd();
  // " +0x1d", then with GOTRACEBACK=system " fp=0x… sp=0x… pc=0x…"
  const offset = s.lastIndexOf(' +0x');
  if (offset > 0) s = s.slice(0, offset);
  else if (s.lastIndexOf(' fp=') > 0) s = s.slice(0, s.lastIndexOf(' fp='));
  const colon = s.lastIndexOf(':');
  return colon > 0 && isDigits(s, colon + 1) ? s.slice(0, colon) : undefined;
}

/** Strips a trailing ":line" or ":line:column". */
function withoutLineColumn(location: string): string {
  let s = location;
  for (let k = 0; k < 2; k++) {
    const colon = s.lastIndexOf(':');
    if (colon <= 0 || !isDigits(s, colon + 1)) break;
    s = s.slice(0, colon);
  }
  return s;
}

/** "Pay.java:3", "Native Method", "Unknown Source", "<generated>" → the file, else undefined. */
function jvmSource(inside: string): string | undefined {
  if (inside === 'Native Method' || inside === '<generated>') return inside;
  if (inside === 'Unknown Source' || inside.startsWith('Unknown Source:')) return 'Unknown Source';
  const file = withoutLineColumn(inside);
  return JVM_SOURCE.test(file) ? file : undefined;
}

/** "java.base/java.lang.Thread.run", "app//com.x.Y.z" → without the module or class loader. */
function withoutModule(fn: string): string {
  const slash = fn.indexOf('/');
  // A '$' before the slash is a generated name ("X$$Lambda$12/0x…"), not a module.
  if (slash < 0 || fn.lastIndexOf('$', slash) >= 0) return fn;
  return fn.charCodeAt(slash + 1) === 47 ? fn.slice(slash + 2) : fn.slice(slash + 1);
}

/** Reads "at …" (JVM, .NET or V8) after "at ". */
function atFrame(rest: string): Frame | undefined {
  const paren = rest.indexOf('(');
  const space = rest.indexOf(' ');
  if (paren > 0 && (space < 0 || space > paren)) {
    // "name(…)": JVM when the parentheses hold a source file, else .NET.
    const close = rest.indexOf(')', paren);
    if (close < 0) return undefined;
    const fn = rest.slice(0, paren);
    const jvm = jvmSource(rest.slice(paren + 1, close));
    if (jvm !== undefined) return { fn: withoutModule(fn), file: jvm, runtime: 'jvm' };
    // "at Ns.Type.Method(Int32 id) in /src/File.cs:line 42"
    const inAt = rest.lastIndexOf(') in ');
    let file = inAt >= close ? rest.slice(inAt + 5) : '';
    const lineAt = file.lastIndexOf(':line ');
    if (lineAt > 0) file = file.slice(0, lineAt);
    return { fn, file, runtime: 'dotnet' };
  }
  // V8: "fn (location)", "async fn (location)", "location".
  const body = rest.startsWith('async ') ? rest.slice(6) : rest;
  const open = body.indexOf(' (');
  if (open > 0 && body.endsWith(')')) {
    return { fn: body.slice(0, open), file: v8File(body.slice(open + 2, -1)), runtime: 'v8' };
  }
  return { fn: '<anonymous>', file: v8File(body), runtime: 'v8' };
}

function v8File(location: string): string {
  if (location.startsWith('eval at ')) return 'eval';
  return withoutLineColumn(location);
}

/** "/app/x.rb:12:in 'Foo#bar'" (also with "from " and the backtick form). */
function rubyFrame(body: string): { frame: Frame; type: string | undefined } | undefined {
  const s = body.startsWith('from ') ? body.slice(5) : body;
  const at = s.indexOf(':in ');
  if (at <= 0) return undefined;
  const colon = s.lastIndexOf(':', at - 1);
  if (colon <= 0 || !isDigits(s, colon + 1, at)) return undefined;
  let label = s.slice(at + 4);
  let type: string | undefined;
  const quote = label.charCodeAt(0);
  if (quote === 96 || quote === 39) {
    // `label' or 'label', then on the first line ": message (Type)".
    const end = label.indexOf("'", 1);
    const after = end > 0 ? label.slice(end + 1) : '';
    label = end > 0 ? label.slice(1, end) : label.slice(1);
    const open = after.lastIndexOf(' (');
    if (after.startsWith(': ') && after.endsWith(')') && open > 0) {
      type = after.slice(open + 2, -1).slice(0, MAX_TYPE_CHARS);
    }
  }
  return { frame: { fn: label, file: s.slice(0, colon), runtime: 'ruby' }, type };
}

/** '  File "/app/x.py", line 10, in handler' */
function pythonFrame(body: string): Frame | undefined {
  if (!body.startsWith('File "')) return undefined;
  const end = body.indexOf('", line ', 6);
  if (end < 0) return undefined;
  const inAt = body.indexOf(', in ', end + 8);
  return {
    fn: inAt > 0 ? body.slice(inAt + 5) : '',
    file: body.slice(6, end),
    runtime: 'python',
  };
}

const GROUP_HEADER = '+ Exception Group Traceback';

/**
 * A line of a Python 3.11+ exception group without its margins: "  |   File …" → "  File …"
 * (Python's own indentation after "| " kept), "  + Exception Group Traceback…" and
 * "+-+---- 1 ----" → what follows the margin characters.
 */
function withoutGroupMargin(line: string): string {
  let end = 0;
  let bar = -1;
  for (; end < line.length; end++) {
    const c = line.charCodeAt(end);
    if (c === 124)
      bar = end; // |
    else if (c === 43)
      bar = -1; // + after the last |: a header or separator follows
    else if (c !== 32 && c !== 45) break;
  }
  if (bar >= 0 && line.charCodeAt(bar + 1) === 32) return line.slice(bar + 2);
  if (bar >= 0) return line.slice(bar + 1);
  return line.slice(end);
}

function indentOf(line: string): number {
  let i = 0;
  while (i < line.length && (line.charCodeAt(i) === 32 || line.charCodeAt(i) === 9)) i++;
  return i;
}

export function parseStack(stack: string): ParsedStack {
  const lines = capStack(stack).split('\n');
  const sections: Section[] = [{ type: undefined, frames: [] }];
  let current: Section | undefined = sections[0];
  let python = false; // a Python traceback was seen: its last section is the raised error
  let pythonFrames = false; // inside a traceback's frames; the next unindented line is the type
  let suppressed = -1; // indent of a Java "Suppressed:" block being skipped, or -1
  let goroutines = 0;
  let inGroup = false; // inside a Python exception group's "  | " margins
  let raisedGroup: Section | undefined; // the outermost exception group: the raised error
  let header = true; // the first non-blank line may name the type

  const open = (type: string | undefined) => {
    if (sections.length >= MAX_SECTIONS) current = undefined;
    else sections.push((current = { type, frames: [] }));
  };
  const add = (frame: Frame) => current?.frames.push(frame);
  const setType = (type: string | undefined) => {
    if (current && current.type === undefined) current.type = type;
  };

  for (let i = 0; i < lines.length && current !== undefined; i++) {
    let raw = lines[i]!;
    if (raw.length > MAX_LINE_CHARS) {
      if (header) setType(exceptionType(raw.trimStart()));
      header = false;
      continue;
    }
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    if (inGroup || raw.trimStart().startsWith(GROUP_HEADER)) {
      inGroup = true;
      raw = withoutGroupMargin(raw);
    }
    const indent = indentOf(raw);
    const body = raw.slice(indent).trimEnd();
    if (body === '') continue;
    const wasHeader = header;
    header = false;

    if (suppressed >= 0) {
      // Java prints a suppressed exception's frames and causes indented past "Suppressed:".
      const leaves =
        indent < suppressed || (indent === suppressed && body.startsWith('Suppressed: '));
      if (!leaves) continue;
      suppressed = -1;
    }

    // Python
    const groupHeader = body.startsWith('Exception Group Traceback (most recent call last):');
    if (groupHeader || body.startsWith('Traceback (most recent call last):')) {
      if (current.frames.length > 0 || current.type !== undefined) open(undefined);
      if (groupHeader && raisedGroup === undefined) raisedGroup = current;
      python = true;
      pythonFrames = true;
      continue;
    }
    const py = pythonFrame(body);
    if (py) {
      add(py);
      continue;
    }
    if (pythonFrames && indent === 0) {
      pythonFrames = false;
      setType(PY_TYPE.exec(body)?.[1]?.slice(0, MAX_TYPE_CHARS));
      continue;
    }
    if (pythonFrames) continue; // a source line or its carets

    // Go: "goroutine 1 [running]:", "fn(args)" + "\tfile:line +0x…", "created by fn in goroutine 7"
    if (indent === 0 && body.startsWith('goroutine ') && body.endsWith(':')) {
      if (++goroutines > 1) break; // the first goroutine is the one that panicked
      continue;
    }
    if (indent === 0) {
      const file = goFile(lines[i + 1]);
      if (file !== undefined) {
        let fn: string | undefined;
        if (body.startsWith('created by ')) {
          const inAt = body.indexOf(' in goroutine ');
          fn = inAt > 0 ? body.slice(0, inAt) : body;
        } else if (body.endsWith(')')) {
          const paren = body.lastIndexOf('(');
          const name = paren > 0 ? body.slice(0, paren) : '';
          if (name !== '' && name.indexOf(' ') < 0) fn = name;
        }
        if (fn !== undefined) {
          add({ fn, file, runtime: 'go' });
          i++;
          continue;
        }
      }
    }

    // JVM causes and suppressed exceptions
    if (body.startsWith('Caused by: ')) {
      open(exceptionType(body.slice(11)));
      continue;
    }
    if (body.startsWith('Suppressed: ')) {
      suppressed = indent;
      continue;
    }
    // .NET inner exceptions: " ---> Type: msg", "--- End of inner exception stack trace ---"
    if (body.startsWith('---> ')) {
      open(exceptionType(body.slice(5)));
      continue;
    }
    if (body.startsWith('--- ')) {
      if (body.startsWith('--- End of inner exception stack trace')) open(undefined);
      continue;
    }

    if (body.startsWith('at ')) {
      const frame = atFrame(body.slice(3).trimStart());
      if (frame) add(frame);
      continue;
    }
    const ruby = rubyFrame(body);
    if (ruby) {
      add(ruby.frame);
      if (wasHeader) setType(ruby.type);
      continue;
    }
    if (wasHeader) {
      // .NET Framework put inner exceptions on the first line: "A: x ---> B: y".
      const inner = body.indexOf(' ---> ');
      setType(exceptionType(body));
      if (inner > 0) open(exceptionType(body.slice(inner + 6)));
    }
  }

  for (const s of sections) {
    if (s.frames.length <= MAX_FRAMES) continue;
    // Python prints the innermost frame last; the others first.
    s.frames = python ? s.frames.slice(-MAX_FRAMES) : s.frames.slice(0, MAX_FRAMES);
  }
  const kept = sections.filter((s) => s.frames.length > 0 || s.type !== undefined);
  // Python prints the raised error last, the others first.
  const typed = kept.findLastIndex((s) => s.type !== undefined);
  const group = raisedGroup === undefined ? -1 : kept.indexOf(raisedGroup);
  const primary = !python
    ? 0
    : group >= 0
      ? group
      : typed >= 0
        ? typed
        : Math.max(0, kept.length - 1);
  return {
    type: kept[primary]?.type,
    frames: kept.flatMap((s) => s.frames),
    sections: kept,
    primary,
  };
}
