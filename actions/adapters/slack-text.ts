/**
 * Text for Slack's mrkdwn. Slack reads `<…>` as a control sequence (`<!channel>`,
 * `<@U123>`, `<http://x|label>`) and asks senders to escape `&`, `<` and `>` as HTML
 * entities; once escaped, a value written by whoever sent the event is shown as written
 * and can neither mention anyone nor disguise a link. Drover's own notification text
 * carries no markup of its own, so all of it is escaped.
 */
export function escapeMrkdwn(text: string): string {
  return text.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
}

/**
 * At most `max` UTF-16 units, cut on a code point boundary, with a marker when cut: Slack
 * refuses a block whose text is longer than its limit (3,000 for a section, 150 for a
 * header), and a refused notification would be a lost one.
 */
export function clip(text: string, max: number, marker = '…'): string {
  if (text.length <= max) return text;
  let end = max - marker.length;
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--; // do not split a surrogate pair
  let cut = text.slice(0, end);
  // Nor an entity: `&amp;` cut to `&am` would show as such.
  const amp = cut.lastIndexOf('&');
  if (amp >= 0 && amp > cut.length - 5 && !cut.slice(amp).includes(';')) cut = cut.slice(0, amp);
  return `${cut}${marker}`;
}
