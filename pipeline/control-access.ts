import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Who may call which control route. Three kinds of route:
 * - `open`: /healthz and /readyz, for probes that carry no credential;
 * - `read`: rules, alerts, the journal, silences, the kill switch's state, /metrics: a
 *   read or an admin token, or nothing at all when the endpoint is open (loopback, no
 *   ingest credentials and no read tokens configured);
 * - `admin`: anything that acts (kill switch, silences, rules reload): an admin token,
 *   always, even on loopback, from a request no browser page could have made (no
 *   `Origin`, a `Host` that names this server, a JSON body or none).
 * Ingest tokens and API keys open neither: they only publish events.
 */
export type Access = 'open' | 'read' | 'admin';

export interface AccessOptions {
  /** The configured listen host. */
  host: string;
  /** More `Host` names control routes answer to (a DNS name the server is reached by). */
  allowedHosts: string[];
  readTokens: string[];
  adminTokens: string[];
  /** Reads need no credential (loopback without any ingest credential or read token). */
  openReads: boolean;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** The access options of a `listen:` configuration, with the admin tokens in force. */
export function accessOptions(
  listen: {
    host: string;
    allowedHosts?: string[];
    readTokens?: string[];
    tokens: string[];
    apiKeys: string[];
  },
  adminTokens: string[],
): AccessOptions {
  const readTokens = listen.readTokens ?? [];
  return {
    host: listen.host,
    allowedHosts: listen.allowedHosts ?? [],
    readTokens,
    adminTokens,
    // As open as ingest is: loopback with no credential configured for either.
    openReads:
      readTokens.length === 0 &&
      listen.tokens.length === 0 &&
      listen.apiKeys.length === 0 &&
      LOOPBACK.test(listen.host),
  };
}

export class AccessError extends Error {
  constructor(
    readonly statusCode: 401 | 403 | 415,
    message: string,
  ) {
    super(message);
  }
}

const LOCAL_NAMES = ['localhost', '127.0.0.1', '::1'];
const WILDCARD = ['0.0.0.0', '::', ''];

export function createAccessCheck(
  options: AccessOptions,
): (req: FastifyRequest, reply: FastifyReply, access: Access) => void {
  const admin = options.adminTokens.map((t) => `Bearer ${t}`);
  const read = [...options.readTokens.map((t) => `Bearer ${t}`), ...admin];
  const configured = options.host.toLowerCase();
  // Bound to every interface, the server is reached by names it cannot know; there every
  // control route needs a credential, which a rebinding page does not have.
  const anyHost = WILDCARD.includes(configured) && options.allowedHosts.length === 0;
  const hosts = new Set(
    [...LOCAL_NAMES, configured, ...options.allowedHosts].map((h) => h.toLowerCase()),
  );
  const hostAllowed = (header: string | undefined): boolean => {
    if (anyHost) return true;
    if (header === undefined) return false;
    return hosts.has(hostName(header));
  };
  return (req, reply, access) => {
    if (access === 'open') return;
    if (!hostAllowed(req.headers.host))
      throw new AccessError(403, 'the Host header does not name this server');
    if (access === 'admin' && req.headers.origin !== undefined)
      throw new AccessError(403, 'admin routes do not answer requests made by web pages (Origin)');
    const given = req.headers.authorization ?? '';
    const allowed = access === 'admin' ? admin : read;
    if (!(access === 'read' && options.openReads) && !allowed.some((c) => safeEqual(c, given))) {
      reply.header('www-authenticate', 'Bearer');
      throw new AccessError(
        401,
        access === 'admin' ? 'this route needs an admin token' : 'this route needs a read token',
      );
    }
    if (access === 'admin') {
      const type = req.headers['content-type'];
      const hasBody =
        Number(req.headers['content-length'] ?? 0) > 0 ||
        req.headers['transfer-encoding'] !== undefined;
      if ((type !== undefined || hasBody) && !/^application\/json\s*(;|$)/i.test(type ?? ''))
        throw new AccessError(415, 'admin routes take application/json');
    }
  };
}

/** The name in a Host header, without its port: `[::1]:4280` → `::1`. */
function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.indexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
