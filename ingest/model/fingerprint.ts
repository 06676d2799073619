import { createHash } from 'node:crypto';
import { mask, identity } from './stack-identity.ts';
import {
  capStack,
  exceptionType,
  MAX_LINE_CHARS,
  MAX_STACK_CHARS,
  MAX_TYPE_CHARS,
  parseStack,
} from './stack-parse.ts';

/**
 * Stack-trace fingerprints: one id for "the same bug" across hosts, requests, deploys
 * and runtime versions, for `error.fingerprint` (a `new_term` rule on it reports a new
 * bug). The algorithm, per runtime, and its caps are in docs/fingerprint.md.
 *
 * The stack is attacker-written: only its first MAX_STACK_CHARS characters are read,
 * in one linear pass (stack-parse.ts), and at most MAX_FRAMES frames of each of at most
 * MAX_SECTIONS sections are hashed.
 */

export {
  type Frame,
  MAX_FRAMES,
  MAX_LINE_CHARS,
  MAX_SECTIONS,
  MAX_STACK_CHARS,
  MAX_TYPE_CHARS,
  type ParsedStack,
  parseStack,
  type Section,
} from './stack-parse.ts';

/**
 * The same bug throws the same frames over and over, each time with another message: a
 * fingerprint is remembered keyed by the event's error type, the first line's type and
 * the text after the first line. Only stacks whose fingerprint cannot depend on the rest
 * of the first line are remembered (frames found, the first line a plain header), and
 * only stacks within MAX_STACK_CHARS, so a key never holds more than its stack. Bounded by CACHE_CHARS characters of keys in all, then emptied.
 */
const cache = new Map<string, string>();
/** Characters of cache keys held at most (~8 MB as UTF-16). */
export const CACHE_CHARS = 4 * 1024 * 1024;
let cacheChars = 0;

/** A 16-hex-digit id of the bug that threw `stack`; `errorType` is the event's error.type. */
export function fingerprint(stack: string, errorType?: string): string {
  const newline = stack.indexOf('\n');
  if (newline < 0 || stack.length > MAX_STACK_CHARS || newline > MAX_LINE_CHARS) {
    return compute(stack, errorType).id;
  }
  // Remembered only when the first line is a plain "Type: message" header: then it adds its
  // type and nothing else (a Ruby or Go first line is a frame, a .NET one may hold inner types).
  const first = stack.slice(0, newline);
  const type = exceptionType(first);
  if (
    type === undefined ||
    indentOf(first) > 0 ||
    first.includes(':in ') ||
    first.includes(' ---> ')
  )
    return compute(stack, errorType).id;
  const given = errorType === undefined ? '-' : `+${errorType.slice(0, MAX_TYPE_CHARS)}`;
  const key = `${given}\u0000${type}\u0000${stack.slice(newline)}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const { id, frames } = compute(stack, errorType);
  if (frames > 0 && key.length <= CACHE_CHARS) {
    if (cacheChars + key.length > CACHE_CHARS) {
      cache.clear();
      cacheChars = 0;
    }
    cache.set(key, id);
    cacheChars += key.length;
  }
  return id;
}

function indentOf(line: string): number {
  const c = line.charCodeAt(0);
  return c === 32 || c === 9 ? 1 : 0;
}

function compute(stack: string, errorType: string | undefined): { id: string; frames: number } {
  const text = capStack(stack);
  const { parts, frames } = identity(parseStack(text), errorType);
  if (frames === 0) {
    // No frames to go by: the masked message of the first line is the best shape we have.
    const first = text.slice(0, Math.min(text.length, MAX_LINE_CHARS)).split('\n', 1)[0]!;
    parts.push(`message:${mask(first.replace(/^[^:]*:\s*/, ''))}`);
  }
  return { id: createHash('sha1').update(parts.join('\n')).digest('hex').slice(0, 16), frames };
}
