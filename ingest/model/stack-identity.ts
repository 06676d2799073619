import type { Frame, ParsedStack } from './stack-parse.ts';
import { MAX_TYPE_CHARS } from './stack-parse.ts';

/**
 * What of a parsed stack identifies the bug (docs/fingerprint.md): each section's type,
 * and each frame's function and file with what varies between occurrences masked —
 * numbers, addresses, hex ids, generated class names, deploy and version path parts —
 * and the runtime's own frames, which change with the runtime version, left out.
 *
 * Every function here runs over one frame's text (bounded by the parser's line cap)
 * with replacements that cannot backtrack over more than the token they match.
 */

/**
 * Masks what varies between occurrences of the same bug, token by token (a token is a run
 * of ASCII letters and digits): a uuid → <id>, "0x…" → <addr>, six or more hex digits
 * mixing digits and letters → <hex>, any other run of digits → <n>. One pass, no regex.
 */
export function mask(s: string): string {
  if (!hasDigit(s)) return s; // every masked token has a digit
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < s.length) {
    if (!isAlnum(s.charCodeAt(i))) {
      i++;
      continue;
    }
    if (isUuidAt(s, i)) {
      out += `${s.slice(copied, i)}<id>`;
      i += 36;
      copied = i;
      continue;
    }
    let end = i;
    let digits = 0;
    let hexLetters = 0;
    let other = 0;
    for (; end < s.length; end++) {
      const c = s.charCodeAt(end);
      if (isDigit(c)) digits++;
      else if (isHexLetter(c)) hexLetters++;
      else if (isAlnum(c)) other++;
      else break;
    }
    const length = end - i;
    let replacement: string | undefined;
    if (s.charCodeAt(i) === 48 && (s.charCodeAt(i + 1) | 32) === 120 && length > 2) {
      // "0x1f": the x is the only non-hex letter
      if (other === 1 && isHexToken(s, i + 2, end)) replacement = '<addr>';
    } else if (other === 0 && length >= 6 && digits > 0 && hexLetters > 0) {
      replacement = '<hex>';
    }
    if (replacement !== undefined) {
      out += s.slice(copied, i) + replacement;
      copied = end;
    } else if (digits > 0) {
      // "func12" → "func<n>", "12" → "<n>"
      out += s.slice(copied, i);
      for (let k = i; k < end;) {
        if (isDigit(s.charCodeAt(k))) {
          while (k < end && isDigit(s.charCodeAt(k))) k++;
          out += '<n>';
        } else {
          const from = k;
          while (k < end && !isDigit(s.charCodeAt(k))) k++;
          out += s.slice(from, k);
        }
      }
      copied = end;
    }
    i = end;
  }
  return out + s.slice(copied);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
function isHexLetter(c: number): boolean {
  return (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}
function isAlnum(c: number): boolean {
  return isDigit(c) || (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
}
function hasDigit(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (isDigit(s.charCodeAt(i))) return true;
  return false;
}
function isHexToken(s: string, from: number, to: number): boolean {
  for (let k = from; k < to; k++) {
    const c = s.charCodeAt(k);
    if (!isDigit(c) && !isHexLetter(c)) return false;
  }
  return true;
}
/** 8-4-4-4-12 hex digits at `i`, not inside a longer token. */
function isUuidAt(s: string, i: number): boolean {
  if (s.length - i < 36 || s.charCodeAt(i + 8) !== 45) return false;
  for (const dash of [13, 18, 23]) if (s.charCodeAt(i + dash) !== 45) return false;
  for (const [from, to] of UUID_GROUPS) if (!isHexToken(s, i + from, i + to)) return false;
  return !isAlnum(s.charCodeAt(i + 36));
}
const UUID_GROUPS = [
  [0, 8],
  [9, 13],
  [14, 18],
  [19, 23],
  [24, 36],
] as const;

// Plumbing generated at run time: lambda and reflection glue whose presence depends on the
// JDK and on JIT inflation, not on the code that failed. Left out.
const JVM_PLUMBING = [
  '$$Lambda',
  '$$FastClassBy',
  'GeneratedMethodAccessor',
  'GeneratedConstructorAccessor',
  'GeneratedSerializationConstructorAccessor',
  'LambdaForm$',
];
// The JVM's and Kotlin's own libraries and coroutine machinery.
const JVM_RUNTIME = [
  'java.',
  'jdk.',
  'sun.',
  'com.sun.',
  'kotlin.',
  'kotlinx.coroutines.',
  '_COROUTINE.',
];
// Proxy classes (CGLIB, Spring 6, Guice; ByteBuddy, Hibernate, Mockito) carry the proxied
// method, which may be the only frame naming it: kept, with the generated id dropped.
const CGLIB_ID = /\$\$([A-Za-z]+)\$\$[0-9A-Za-z_]+/g;
const PROXY_ID = /\$(ByteBuddy|HibernateProxy|MockitoMock)\$[0-9A-Za-z_]+/g;

function isProxyClass(fn: string): boolean {
  const at = fn.indexOf('$Proxy');
  if (at < 0 || !isDigit(fn.charCodeAt(at + 6))) return false;
  return at === 0 || fn.charCodeAt(at - 1) === 46; // "$Proxy45.save", "com.sun.proxy.$Proxy45.save"
}

/** "x.Svc$$EnhancerBySpringCGLIB$$8f2a1c3d.m" → "x.Svc$$EnhancerBySpringCGLIB.m"; "jdk.proxy2.$Proxy45.m" → "$Proxy.m". */
function jvmGenerated(fn: string): string {
  if (isProxyClass(fn)) return `$Proxy.${fn.slice(fn.lastIndexOf('.') + 1)}`;
  if (!fn.includes('$')) return fn;
  return fn.replace(CGLIB_ID, '$$$$$1').replace(PROXY_ID, '$$$1');
}

/** A frame of the runtime itself, a generated class or a builtin: not part of the identity. */
export function isInternal(frame: Frame): boolean {
  const { fn, file } = frame;
  switch (frame.runtime) {
    case 'jvm':
      if (
        (fn.includes('$') || fn.includes('Generated')) &&
        JVM_PLUMBING.some((g) => fn.includes(g))
      )
        return true;
      return !isProxyClass(fn) && JVM_RUNTIME.some((p) => fn.startsWith(p));
    case 'v8':
      return (
        file.startsWith('node:') ||
        file.startsWith('internal/') ||
        file === 'native' ||
        file === '<anonymous>' ||
        file.startsWith('index ') // "at async Promise.all (index 0)"
      );
    case 'python':
      return file.startsWith('<frozen ') || isPythonStdlib(file);
    case 'go':
      return (
        fn === 'panic' ||
        fn.startsWith('runtime.') ||
        fn.startsWith('runtime/') ||
        fn.startsWith('created by runtime.')
      );
    case 'dotnet':
      return fn.startsWith('System.');
    case 'ruby':
      return file.startsWith('<internal:') || isRubyStdlib(file);
  }
}

/** "/usr/lib/python3.12/json/decoder.py", not ".../python3.12/site-packages/…". */
function isPythonStdlib(file: string): boolean {
  return (
    PYTHON_LIB.test(file) && !file.includes('site-packages') && !file.includes('dist-packages')
  );
}
const PYTHON_LIB = /[/\\]python\d+\.\d+[/\\]/;

/** "/usr/local/lib/ruby/3.3.0/net/http.rb", not ".../lib/ruby/gems/…". */
function isRubyStdlib(file: string): boolean {
  const at = file.indexOf('/lib/ruby/');
  return at >= 0 && isDigit(file.charCodeAt(at + 10));
}

/** The function, with per-build and per-call parts normalized. */
export function frameFunction(frame: Frame): string {
  let fn = frame.fn;
  switch (frame.runtime) {
    case 'jvm':
      fn = jvmGenerated(kotlinContinuation(fn));
      break;
    case 'dotnet':
      fn = dotnetStateMachine(fn);
      break;
    case 'ruby':
      fn = rubyMethod(fn);
      break;
    default:
      break;
  }
  return mask(fn);
}

/** "com.acme.Svc$placeOrder$2.invokeSuspend" → "com.acme.Svc.placeOrder", as a direct call reads. */
function kotlinContinuation(fn: string): string {
  if (!fn.endsWith('.invokeSuspend')) {
    return fn.endsWith('$suspendImpl') ? fn.slice(0, -'$suspendImpl'.length) : fn;
  }
  const parts = fn.slice(0, -'.invokeSuspend'.length).split('$');
  while (parts.length > 1 && /^\d+$/.test(parts.at(-1)!)) parts.pop();
  if (parts.length < 2) return fn;
  const method = parts.pop()!;
  return `${parts.join('$')}.${method}`;
}

/** "Ns.Svc.<PlaceOrderAsync>d__5.MoveNext" → "Ns.Svc.PlaceOrderAsync", as .NET 6+ prints it. */
function dotnetStateMachine(fn: string): string {
  if (!fn.endsWith('.MoveNext')) return fn;
  const base = fn.slice(0, -'.MoveNext'.length);
  const open = base.lastIndexOf('.<');
  const close = base.indexOf('>', open);
  if (open < 0 || close < 0 || !base.startsWith('d__', close + 1)) return fn;
  return `${base.slice(0, open)}.${base.slice(open + 2, close)}`;
}

/** "block (2 levels) in Order#charge" → "charge"; Ruby 3.4 added the class to the label. */
function rubyMethod(label: string): string {
  let s = label;
  for (;;) {
    const inAt = s.indexOf(' in ');
    if (inAt < 0 || !/^(?:block|rescue|ensure)\b/.test(s)) break;
    s = s.slice(inAt + 4);
  }
  if (s.startsWith('<')) return s; // "<main>", "<class:Order>", "<top (required)>"
  const sep = Math.max(s.lastIndexOf('#'), s.lastIndexOf('.'));
  return sep >= 0 ? s.slice(sep + 1) : s;
}

/** The file, reduced to what stays across deploys, hosts and versions. */
export function frameFile(frame: Frame): string {
  if (frame.runtime === 'jvm') return mask(frame.file); // "Pay.java": no path
  return mask(stablePath(frame.file));
}

/**
 * The last directory and the file name, without URL scheme and host, query, version
 * suffixes of the directory ("activerecord-7.1.2", "pq@v1.10.9") or content hashes of
 * the file name ("main.8f2a1c3d.js", "chunk-5XHZ3KQH.js"). Deploy roots, release
 * directories, container ids and package caches are further up and so never hashed.
 */
export function stablePath(location: string): string {
  let s = location;
  const scheme = s.indexOf('://');
  if (scheme > 0 && URL_SCHEME.test(s.slice(0, scheme))) {
    const rest = s.slice(scheme + 3);
    const slash = rest.indexOf('/');
    // "file:///app/x.mjs" has no host; "https://cdn-3.example.com/x.js" and "webpack://app/x" do.
    s = s.startsWith('file:') ? rest : slash >= 0 ? rest.slice(slash) : '';
  }
  const query = s.indexOf('?');
  if (query >= 0) s = s.slice(0, query);
  const hash = s.indexOf('#');
  if (hash >= 0) s = s.slice(0, hash);
  // The last two components, read from the end: "/a/b/./dir//name" → "dir", "name".
  const found: string[] = [];
  let end = s.length;
  for (let i = s.length - 1; i >= -1 && found.length < 2; i--) {
    const c = i < 0 ? 47 : s.charCodeAt(i);
    if (c !== 47 && c !== 92) continue;
    const part = s.slice(i + 1, end);
    if (part !== '' && part !== '.') found.push(part);
    end = i;
  }
  const base = withoutContentHash(found[0] ?? '');
  return found[1] === undefined ? base : `${withoutVersion(found[1])}/${base}`;
}
const URL_SCHEME = /^[A-Za-z][\w+.-]*$/;

/** "activerecord-7.1.2" → "activerecord", "pq@v1.10.9" → "pq"; other names as they are. */
function withoutVersion(dir: string): string {
  for (let i = 1; i < dir.length - 1; i++) {
    const c = dir[i];
    if (c !== '-' && c !== '@' && c !== '_') continue;
    const next = dir.charCodeAt(i + 1) === 118 ? i + 2 : i + 1; // "v1.2"
    if (isDigit(dir.charCodeAt(next))) return dir.slice(0, i);
  }
  return dir;
}

/** Drops hash tokens after the first one of a file name: "main.8f2a1c3d.js" → "main.js". */
function withoutContentHash(name: string): string {
  const dot = name.indexOf('.');
  if (dot === name.lastIndexOf('.') && name.indexOf('-') < 0) return name; // "pay.js"
  return name.replace(/[.-][A-Za-z0-9_]{6,}(?=\.)/g, (token) =>
    isContentHash(token.slice(1), token[0] === '-') ? '' : token,
  );
}

function isContentHash(token: string, dashed: boolean): boolean {
  if (hasDigit(token)) return true; // "8f2a1c3d", "5XHZ3KQH", "20261201"
  if (token.length >= 8 && isHexToken(token, 0, token.length)) return true; // "deadbeef"
  // Vite names chunks "index-DiwrgTda.js": eight base64url characters, mixed case.
  return dashed && token.length === 8 && /[a-z]/.test(token) && /[A-Z]/.test(token.slice(1));
}

/**
 * The same frames recur in stack after stack: a frame's part is remembered, keyed by its
 * runtime, function and file (each at most MAX_LINE_CHARS, from one line). Bounded by
 * PART_CACHE_CHARS characters of keys in all, then emptied.
 */
const parts = new Map<string, string>();
/** Characters of frame keys remembered at most (~2 MB as UTF-16). */
export const PART_CACHE_CHARS = 1024 * 1024;
let partChars = 0;

/** "function@file" of a frame, or '' for a frame left out. */
function framePart(frame: Frame): string {
  const key = `${frame.runtime}\u0000${frame.fn}\u0000${frame.file}`;
  let part = parts.get(key);
  if (part !== undefined) return part;
  part = isInternal(frame) ? '' : `${frameFunction(frame)}@${frameFile(frame)}`;
  if (partChars + key.length > PART_CACHE_CHARS) {
    parts.clear();
    partChars = 0;
  }
  parts.set(key, part);
  partChars += key.length;
  return part;
}

/**
 * The lines hashed for a parsed stack: each section's masked type, then its frames
 * outside the runtime as "function@file", a run of one frame (recursion) counted once.
 * `errorType`, when the event names one, stands for the raised error's type.
 */
export function identity(
  parsed: ParsedStack,
  errorType?: string,
): { parts: string[]; frames: number } {
  const lines: string[] = [];
  let frames = 0;
  parsed.sections.forEach((section, i) => {
    const type = i === parsed.primary && errorType !== undefined ? errorType : section.type;
    lines.push(`type:${mask((type ?? '').slice(0, MAX_TYPE_CHARS))}`);
    let previous = '';
    for (const frame of section.frames) {
      const part = framePart(frame);
      if (part === '' || part === previous) continue;
      lines.push(part);
      previous = part;
      frames++;
    }
  });
  if (parsed.sections.length === 0 && errorType !== undefined) {
    lines.push(`type:${mask(errorType.slice(0, MAX_TYPE_CHARS))}`);
  }
  return { parts: lines, frames };
}
