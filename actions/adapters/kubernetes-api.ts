import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/**
 * The few Kubernetes API calls the adapter makes, over plain node:http with the
 * kubeconfig's credentials and TLS settings applied by @kubernetes/client-node. Kept this
 * thin on purpose: the adapter needs every status code and the API's Status object
 * (429 from a PodDisruptionBudget, 404 from a missing subresource) as the server sent them.
 */

/** The API's error object (meta/v1 Status). */
export interface Status {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: Array<{ reason?: string; message?: string }> };
}

export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: Status,
  ) {
    super(
      `Kubernetes API ${method} ${path}: ${status}${body.reason ? ` ${body.reason}` : ''}: ${body.message ?? 'request failed'}`,
    );
  }
}

export const MERGE_PATCH = 'application/merge-patch+json';
const TIMEOUT_MS = 15_000;

export class KubeApi {
  constructor(
    private readonly kc: KubeConfig,
    private readonly timeoutMs = TIMEOUT_MS,
  ) {}

  get server(): string {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    return cluster.server;
  }

  async request<T>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    options: { body?: unknown; contentType?: string; signal?: AbortSignal } = {},
  ): Promise<T> {
    const url = new URL(path, this.server);
    const opts: RequestOptions = { method, headers: { accept: 'application/json' } };
    // Tokens (also from exec plugins), client certificates, CA and skip-TLS-verify.
    await this.kc.applyToHTTPSOptions(opts);
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    if (payload !== undefined) {
      Object.assign(opts.headers!, {
        'content-type': options.contentType ?? 'application/json',
        'content-length': Buffer.byteLength(payload),
      });
    }
    if (options.signal) opts.signal = options.signal;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const req = send(url, opts, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('error', reject);
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
        });
        req.on('error', (err) =>
          reject(new Error(`Kubernetes API ${method} ${path}: ${err.message}`, { cause: err })),
        );
        req.setTimeout(this.timeoutMs, () =>
          req.destroy(new Error(`timed out after ${this.timeoutMs / 1000}s`)),
        );
        req.end(payload);
      },
    );
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      // A proxy or load balancer in front of the API server answered, not the API server.
      parsed = { message: text.slice(0, 300) };
      if (status < 400)
        throw new KubeApiError(method, path, status, {
          message: `not JSON: ${text.slice(0, 300)}`,
        });
    }
    if (status >= 400) throw new KubeApiError(method, path, status, parsed as Status);
    return parsed as T;
  }
}

/** A label selector object (matchLabels and matchExpressions) as the `labelSelector` query string. */
export function labelSelectorString(selector: {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}): string {
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).join(',')})`;
    if (e.operator === 'In') parts.push(`${e.key} in ${values}`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin ${values}`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else throw new Error(`unknown label selector operator "${e.operator}" for key "${e.key}"`);
  }
  // An empty selector would match every pod in the namespace; the API rejects that for workloads too.
  if (parts.length === 0) throw new Error('the workload has an empty selector');
  return parts.join(',');
}
