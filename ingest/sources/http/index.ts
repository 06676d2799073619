export { createIngestServer } from './server.ts';
export type { IngestMetrics, IngestServer, IngestServerOptions } from './options.ts';
export { HttpError, PayloadTooLarge } from '../errors.ts';
