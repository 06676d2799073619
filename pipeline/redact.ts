// The redaction step lives at the lowest layer that needs it (ingest answers with it too).
export { REDACTED, redact } from '../ingest/model/redact.ts';
