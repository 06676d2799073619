import { createHash } from 'node:crypto';

/**
 * Stack-trace fingerprints (DESIGN.md §2): one id for "the same bug" across hosts,
 * requests and deploys. The hash covers the error type and each frame's function
 * and file, with line/column numbers, addresses, ids and other numbers masked, and
 * runtime-internal frames (which change with the runtime version) left out.
 */

export interface Frame {
  fn: string;
  file: string;
}

export interface ParsedStack {
  type: string | undefined;
  frames: Frame[];
}

// Node.js / V8: "    at fn (file:line:col)", "    at file:line:col", "    at async fn (...)"
const V8_FRAME =
  /^\s*at\s+(?:async\s+)?(?:(.*?)\s+\((.*?)(?::\d+)?(?::\d+)?\)|(.*?)(?::\d+)?(?::\d+)?)\s*$/;
// Java / JVM: "\tat com.acme.Cls.method(Cls.java:42)", also "(Native Method)", "~[jar:1.0]"
const JVM_FRAME = /^\s*at\s+([\w$.<>/]+?)\(([^)]*)\)/;
// Python: '  File "/app/x.py", line 10, in handler'
const PY_FRAME = /^\s*File "([^"]+)", line \d+, in (.+)$/;
// Go: "main.(*Server).handle(0xc000123, ...)" followed by "\t/app/server.go:42 +0x1d"
const GO_FUNC = /^([\w./*()-]+)\((?:0x[0-9a-f]+|\.\.\.|, )*\)$/;
const GO_FILE = /^\t(\S+\.go):\d+(?: \+0x[0-9a-f]+)?$/;

const INTERNAL_FRAME = [
  /^node:/, // node:internal/..., node:events
  /^internal\//,
  /^native$/,
  /^(?:jdk\.internal|sun\.reflect|java\.lang\.reflect)\./,
  /GeneratedMethodAccessor|\$\$Lambda/,
  /^<frozen /, // Python importlib internals
];

export function parseStack(stack: string): ParsedStack {
  const lines = stack.split(/\r?\n/);
  const frames: Frame[] = [];
  let type: string | undefined;

  if (lines.some((l) => PY_FRAME.test(l))) {
    // Python prints the innermost frame last and the exception type on the last line.
    for (const line of lines) {
      const m = PY_FRAME.exec(line);
      if (m) frames.push({ fn: m[2]!.trim(), file: m[1]! });
    }
    const last = [...lines].reverse().find((l) => /^[\w.]+(?::|$)/.test(l.trim()));
    type = last ? exceptionType(last.trim()) : undefined;
    return { type, frames };
  }

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (i === 0 || /^Caused by: /.test(line)) {
      const head = line.replace(/^Caused by: /, '');
      if (i === 0) type = exceptionType(head.trim());
      else frames.push({ fn: `caused-by:${exceptionType(head.trim()) ?? ''}`, file: '' });
      continue;
    }
    let m = JVM_FRAME.exec(line);
    if (m && /\.(?:java|kt|scala|groovy)|Native Method|Unknown Source/.test(m[2]!)) {
      frames.push({ fn: m[1]!, file: m[2]!.replace(/:\d+.*$/, '') });
      continue;
    }
    m = V8_FRAME.exec(line);
    if (m && /^\s*at\s/.test(line)) {
      if (m[2] !== undefined) frames.push({ fn: m[1]!, file: m[2]! });
      else frames.push({ fn: '<anonymous>', file: m[3]! });
      continue;
    }
    m = GO_FUNC.exec(line.trim());
    const next = lines[i + 1];
    if (m && next !== undefined && GO_FILE.test(next)) {
      frames.push({ fn: m[1]!, file: GO_FILE.exec(next)![1]! });
      i++;
    }
  }
  return { type, frames };
}

/** "TypeError: x" → "TypeError"; "java.lang.IllegalStateException: x" → that class. */
function exceptionType(head: string): string | undefined {
  const m =
    /^([A-Za-z_$][\w$.]*(?:Error|Exception|Throwable|Panic|Fault|Warning|Exit|Interrupt)?)(?::|$)/.exec(
      head,
    );
  if (!m) return undefined;
  // A bare word with no colon is only a type when it looks like one (e.g. "KeyboardInterrupt").
  if (!head.includes(':') && !/(?:Error|Exception|Interrupt|Exit)$/.test(m[1]!)) return undefined;
  return m[1];
}

/** Masks what varies between occurrences of the same bug: numbers, hex, uuids, hashes. */
function mask(s: string): string {
  return s
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
    .replace(/\b0x[0-9a-f]+\b/gi, '<addr>')
    .replace(/\b[0-9a-f]{12,}\b/gi, '<hash>')
    .replace(/\d+/g, '<n>')
    .replace(/\?.*$/, ''); // query strings on bundled file URLs (cache busters)
}

function isInternal(frame: Frame): boolean {
  return INTERNAL_FRAME.some((re) => re.test(frame.file) || re.test(frame.fn));
}

const cache = new Map<string, string>();
const CACHE_LIMIT = 10_000;

/**
 * The same bug throws the same frames over and over: the fingerprint of a frame list
 * is remembered, keyed without the first line (which carries the varying message).
 */
export function fingerprint(stack: string, errorType?: string): string {
  const newline = stack.indexOf('\n');
  if (newline < 0) return computeFingerprint(stack, errorType);
  const key = `${errorType ?? stack.slice(0, stack.search(/[:\n]/))}\u0000${stack.slice(newline)}`;
  let hit = cache.get(key);
  if (hit === undefined) {
    hit = computeFingerprint(stack, errorType);
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, hit);
  }
  return hit;
}

function computeFingerprint(stack: string, errorType?: string): string {
  const parsed = parseStack(stack);
  const type = errorType ?? parsed.type ?? '';
  const parts: string[] = [mask(type)];
  let previous = '';
  for (const frame of parsed.frames) {
    if (isInternal(frame)) continue;
    const part = `${mask(frame.fn)}@${mask(frame.file)}`;
    // Recursion depth varies per request; a run of the same frame counts once.
    if (part === previous) continue;
    parts.push(part);
    previous = part;
  }
  if (parts.length === 1) {
    // No frames to go by: the masked first line is the best shape we have.
    parts.push(mask(stack.split(/\r?\n/, 1)[0]!.replace(/^[^:]*:\s*/, '')));
  }
  return createHash('sha1').update(parts.join('\n')).digest('hex').slice(0, 16);
}
