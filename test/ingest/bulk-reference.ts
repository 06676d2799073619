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

export function decodeBulk(body: string, defaultIndex: string | undefined): BulkItem[] {
  const lines = body.split('\n');
  const items: BulkItem[] = [];
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (text === '') continue;
    let action: unknown;
    try {
      action = JSON.parse(text);
    } catch (err) {
      items.push({
        action: 'unknown',
        index: defaultIndex,
        id: undefined,
        error: {
          type: 'parse_exception',
          reason: `line ${i + 1}: malformed action/metadata line: ${(err as Error).message}`,
          status: 400,
        },
      });
      continue;
    }
    const name = action && typeof action === 'object' ? Object.keys(action)[0] : undefined;
    const meta =
      (name ? (action as Record<string, Record<string, unknown>>)[name] : undefined) ?? {};
    const index = typeof meta._index === 'string' ? meta._index : defaultIndex;
    const id = typeof meta._id === 'string' ? meta._id : undefined;
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
        action: name === 'update' ? 'update' : 'unknown',
        index,
        id,
        error: {
          type: 'illegal_argument_exception',
          reason: `line ${i}: unsupported bulk action ${JSON.stringify(name)}; use index or create`,
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
