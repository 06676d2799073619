/**
 * Keeps credentials out of journaled and logged text. A webhook URL often is the
 * credential (a Slack incoming webhook's path, a `?token=` query), so errors name a URL
 * by scheme, host and port only, and any text an error carries (a receiver's answer, a
 * network error) has every known secret replaced.
 */

/** What is left of a URL in a message: `https://hooks.slack.com/…`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' && !u.search ? '' : '/…'}`;
  } catch {
    return '(an unparsable URL)';
  }
}

/** Secrets shorter than this are not searched for: they would mangle ordinary text. */
const MIN_SECRET = 4;

/**
 * A function replacing, in any text, the URL and every part of it that may be a
 * credential (user, password, path, each query value), and the other `secrets` given
 * (a signing secret, a routing key, header values).
 */
export function createRedactor(
  url: string,
  secrets: Array<string | undefined>,
): (text: string) => string {
  const found = new Set<string>(secrets.filter((s): s is string => !!s));
  try {
    const u = new URL(url);
    found.add(u.href);
    found.add(url);
    for (const part of [u.username, u.password, u.pathname + u.search, u.search.slice(1)])
      if (part && part !== '/') {
        found.add(part);
        found.add(decoded(part));
      }
    for (const value of u.searchParams.values()) found.add(value);
    for (const segment of u.pathname.split('/')) if (segment.length >= 16) found.add(segment);
  } catch {
    found.add(url);
  }
  const shown = redactUrl(url);
  const list = [...found].filter((s) => s.length >= MIN_SECRET).sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const s of list)
      out = out.split(s).join(s === url || s.startsWith('http') ? shown : '[redacted]');
    return out;
  };
}

function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
