/**
 * The ingest server's body reader: a request body streamed through its content-encoding,
 * chunk by chunk, within the limit on both the bytes received and the bytes decompressed.
 */
import type { Transform } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError, PayloadTooLarge } from '../errors.ts';

/**
 * Routes whose bodies are read as they stream in, through their content-encoding and
 * within the limit (413): `decoder(req)` takes the chunks, and what its `end` returns
 * is the handler's `req.body`.
 */
export function streamed(
  scope: FastifyInstance,
  maxBodyBytes: number,
  decoder: (req: FastifyRequest) => { push(chunk: Buffer): void; end(): unknown },
  routes: (scope: FastifyInstance) => void,
): void {
  void scope.register(async (inner) => {
    inner.removeAllContentTypeParsers();
    inner.addContentTypeParser('*', (req, payload, done) => {
      const body = decoder(req);
      readBody(req, payload, maxBodyBytes, {
        data: (chunk) => body.push(chunk),
        end: () => done(null, body.end()),
        error: (err) => done(err, undefined),
      });
    });
    routes(inner);
  });
}

/**
 * Streams a request body through its content-encoding, chunk by chunk, with the limit
 * applied to the bytes received and to the bytes decompressed (413 past either).
 */
export function readBody(
  req: FastifyRequest,
  payload: NodeJS.ReadableStream & { destroy?: () => void },
  limit: number,
  on: { data: (chunk: Buffer) => void; end: () => void; error: (err: Error) => void },
): void {
  if (Number(req.headers['content-length']) > limit) {
    on.error(new PayloadTooLarge('request body too large'));
    return;
  }
  const encoding = String(req.headers['content-encoding'] ?? '').toLowerCase();
  let inflate: Transform | undefined;
  if (encoding === 'gzip' || encoding === 'x-gzip') inflate = createGunzip();
  else if (encoding === 'deflate') inflate = createInflate();
  else if (encoding !== '' && encoding !== 'identity') {
    on.error(
      new HttpError(`unsupported content-encoding ${encoding}`, 415, 'DROVER_UNSUPPORTED_ENCODING'),
    );
    return;
  }
  let settled = false;
  const fail = (err: Error) => {
    if (settled) return;
    settled = true;
    inflate?.destroy();
    payload.removeAllListeners('data');
    // Keep draining what the client still sends, so the error reply can be read.
    payload.resume();
    on.error(err);
  };
  let received = 0;
  let decoded = 0;
  const take = (chunk: Buffer) => {
    if (settled) return;
    decoded += chunk.length;
    if (decoded > limit) return fail(new PayloadTooLarge('decompressed body too large'));
    try {
      on.data(chunk);
    } catch (err) {
      fail(err as Error);
    }
  };
  const finish = () => {
    if (settled) return;
    settled = true;
    try {
      on.end();
    } catch (err) {
      on.error(err as Error);
    }
  };
  payload.on('error', (err: Error) =>
    fail(Object.assign(err, { statusCode: (err as { statusCode?: number }).statusCode ?? 400 })),
  );
  if (inflate) {
    inflate.on('data', take);
    inflate.on('end', finish);
    inflate.on('error', (err: Error) =>
      fail(
        new HttpError(`could not decompress the body: ${err.message}`, 400, 'DROVER_BAD_ENCODING'),
      ),
    );
  }
  payload.on('data', (chunk: Buffer) => {
    if (settled) return;
    received += chunk.length;
    if (received > limit) return fail(new PayloadTooLarge('request body too large'));
    if (inflate) inflate.write(chunk);
    else take(chunk);
  });
  payload.on('end', () => {
    if (settled) return;
    if (inflate) inflate.end();
    else finish();
  });
}
