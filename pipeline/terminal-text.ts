/**
 * Text for a terminal or a log line that may hold event values (targets, reasons, keys,
 * silence comments): C0 and C1 control characters, and the Unicode line and paragraph
 * separators, come out as `\uXXXX`, so a value cannot move the cursor, clear the screen,
 * set a title or start a line that looks like another entry. Linear in the text's length.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export function terminalSafe(s: string): string {
  return s.replace(CONTROL, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
