export {
  createIngestServer,
  type IngestMetrics,
  type IngestServer,
  type IngestServerOptions,
} from './server.ts';
export { HttpError, PayloadTooLarge } from '../errors.ts';
