/**
 * The one way credentials are taken out of text before it is logged, printed or
 * returned: the userinfo of URLs (`https://elastic:pw@es:9200` → `https://***@es:9200`),
 * credential-like query parameters (`?token=…`, `&api_key=…`, `&X-Amz-Signature=…`) and
 * credential headers in serialized objects (`"authorization":"…"`). Each pattern starts
 * at a literal (`://`, `?`/`&`, a quote) and scans forward once, so the cost is linear in
 * the text, whatever it holds.
 */
const USERINFO = /:\/\/[^\s/?#@"'\\<>]*@/g;
const PARAMS =
  /([?&;](?:access_token|refresh_token|id_token|token|api[_-]?key|apikey|key|secret|client_secret|password|passwd|pwd|auth|authorization|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#\s"'\\<>]*/gi;
const HEADERS =
  /("(?:authorization|proxy-authorization|x-api-key|cookie|set-cookie)"\s*:\s*")(?:[^"\\]|\\.)*"/gi;

export const REDACTED = '***';

export function redact(text: string): string {
  if (!text.includes('://') && !text.includes('=') && !/authorization|api-key|cookie/i.test(text))
    return text;
  return text
    .replace(USERINFO, `://${REDACTED}@`)
    .replace(PARAMS, `$1${REDACTED}`)
    .replace(HEADERS, `$1${REDACTED}"`);
}
