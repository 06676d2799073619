export {
  type Capabilities,
  ElasticsearchIndexer,
  type ElasticsearchIndexerOptions,
  IndexingError,
  type IndexerMetrics,
} from './elasticsearch.ts';
export {
  DEFAULT_SCAN_PAGE_SIZE,
  ElasticsearchScan,
  ScanError,
  type ScanMethod,
  type ScanOptions,
} from './elasticsearch-scan.ts';
export { EmbeddedIndex, openEmbeddedIndex, toFtsQuery } from './embedded.ts';
export { IndexWorker, openIndexWorker } from './embedded-worker.ts';
export {
  documentId,
  parseSearchParams,
  type SearchIndex,
  type SearchParams,
  SearchParamsError,
  type SearchResult,
} from '../index/search.ts';
export {
  type AlertDocument,
  dailyIndex,
  type IndexFamily,
  indexPattern,
  indexTemplate,
  MAPPINGS,
} from '../index/templates.ts';
