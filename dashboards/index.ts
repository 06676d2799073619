export {
  GRAFANA_DASHBOARD_UID,
  GRAFANA_SCHEMA_VERSION,
  grafanaDashboard,
  grafanaProvisioning,
  grafanaQueries,
} from './grafana.ts';
export {
  type FieldUse,
  fieldUses,
  kibanaSavedObjects,
  type SavedObject,
  toNdjson,
} from './kibana.ts';
export { ARTIFACTS, renderArtifacts } from './artifacts.ts';
