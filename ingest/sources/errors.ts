/**
 * An error that carries the HTTP status and a stable code for its answer, as Fastify's
 * and pino's errors do (`statusCode`, `code`): the server answers from these fields and
 * never from the message text, which is for people and may change.
 */
export class HttpError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
    readonly code: string,
  ) {
    super(message);
  }
}

/** A body past the size limit, raw or decompressed: 413, the sender should split it. */
export class PayloadTooLarge extends HttpError {
  constructor(message: string) {
    super(message, 413, 'DROVER_BODY_TOO_LARGE');
  }
}
