/**
 * The whole-body `_bulk` decoder ingest had before it decoded bodies as they stream in,
 * kept as the reference the streaming one is compared with (bulk.test.ts).
 *
 * The Elasticsearch `_bulk` body: action lines (`index` / `create`, with `_index` and
 * `_id`) each followed by a document. Every action becomes an item of the response, in
 * request order, exactly as Elasticsearch reports them.
 */
export interface BulkItem {
  action: 'index' | 'create' | 'update' | 'delete' | 'unknown';
  index: string | undefined;
  id: string | undefined;
  document?: unknown;
  /** Why this item cannot be accepted, as an Elasticsearch error. */
  error?: { type: string; reason: string; status: number };
}

/** Why Elasticsearch refuses a whole body for its action line, as in `BulkStream`. */
export interface Malformed {
  malformed: string;
}

const token = (v: unknown): string =>
  v === null
    ? 'VALUE_NULL'
    : Array.isArray(v)
      ? 'START_ARRAY'
      : typeof v === 'object'
        ? 'START_OBJECT'
        : typeof v === 'string'
          ? 'VALUE_STRING'
          : typeof v === 'number'
            ? 'VALUE_NUMBER'
            : 'VALUE_BOOLEAN';
const clip = (t: string) => (t.length > 64 ? `${t.slice(0, 64)}…` : t);

export function decodeBulk(body: string, defaultIndex: string | undefined): BulkItem[] | Malformed {
  const lines = body.split('\n');
  const items: BulkItem[] = [];
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (text === '') continue;
    const malformed = (expected: string): Malformed => ({
      malformed: `Malformed action/metadata line [${i + 1}], expected ${expected}`,
    });
    let action: unknown;
    try {
      action = JSON.parse(text);
    } catch (err) {
      return malformed(`START_OBJECT but found invalid JSON (${clip((err as Error).message)})`);
    }
    if (token(action) !== 'START_OBJECT')
      return malformed(`START_OBJECT but found [${token(action)}]`);
    const names = Object.keys(action as object);
    const name = names[0];
    if (name === undefined) return malformed('FIELD_NAME but found [END_OBJECT]');
    if (!['index', 'create', 'update', 'delete'].includes(name))
      return malformed(`field [create], [delete], [index] or [update] but found [${clip(name)}]`);
    const meta = (action as Record<string, Record<string, unknown>>)[name];
    if (token(meta) !== 'START_OBJECT') return malformed(`START_OBJECT but found [${token(meta)}]`);
    if (names.length > 1) return malformed('END_OBJECT but found [FIELD_NAME]');
    const index = typeof meta!._index === 'string' ? meta!._index : defaultIndex;
    const id = typeof meta!._id === 'string' ? meta!._id : undefined;
    if (name === 'delete') {
      items.push({
        action: 'delete',
        index,
        id,
        error: {
          type: 'illegal_argument_exception',
          reason: 'Drover ingests; it does not delete documents',
          status: 400,
        },
      });
      continue;
    }
    // Every other action carries a document on the next line.
    const docLine = lines[++i];
    if (name !== 'index' && name !== 'create') {
      items.push({
        action: 'update',
        index,
        id,
        error: {
          type: 'illegal_argument_exception',
          reason: `line ${i}: unsupported bulk action "update"; use index or create`,
          status: 400,
        },
      });
      continue;
    }
    if (docLine === undefined || docLine.trim() === '') {
      items.push({
        action: name,
        index,
        id,
        error: {
          type: 'parse_exception',
          reason: `line ${i + 1}: the ${name} action has no document`,
          status: 400,
        },
      });
      continue;
    }
    try {
      items.push({ action: name, index, id, document: JSON.parse(docLine) });
    } catch (err) {
      items.push({
        action: name,
        index,
        id,
        error: {
          type: 'document_parsing_exception',
          reason: `line ${i + 1}: failed to parse the document: ${(err as Error).message}`,
          status: 400,
        },
      });
    }
  }
  return items;
}
