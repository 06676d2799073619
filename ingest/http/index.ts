export {
  createIngestServer,
  type IngestMetrics,
  type IngestServer,
  type IngestServerOptions,
  PayloadTooLarge,
} from './server.ts';
