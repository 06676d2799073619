import { INVALID, JsonLineParser } from './json-syntax.ts';
import { LineSplitter, lineEnd } from './lines.ts';

/**
 * The Elasticsearch `_bulk` body: action lines (`index` / `create`, with `_index` and
 * `_id`) each followed by a document. Every action becomes an item of the response, in
 * request order, exactly as Elasticsearch reports them.
 */
export interface BulkItem {
  action: 'index' | 'create' | 'update' | 'delete' | 'unknown';
  index: string | undefined;
  id: string | undefined;
  /** Why this item cannot be accepted, as an Elasticsearch error. */
  error?: { type: string; reason: string; status: number };
}

/** What becomes of the document lines of `index` and `create` actions. */
export interface BulkDocuments {
  /** A document line, parsed. */
  parsed(item: BulkItem, value: unknown): void;
  /**
   * A document line while it is still bytes (`buf[start]` up to a newline that is
   * there): its newline's position if it dealt with the line, or -1 to have it parsed.
   */
  read?(item: BulkItem, buf: Buffer, start: number): number;
}

/** Sender text quoted in a malformed-action message, at most. */
const QUOTED_CHARS = 64;

/** Elasticsearch's name for a JSON value's first token. */
function tokenOf(value: unknown): string {
  if (value === null) return 'VALUE_NULL';
  if (Array.isArray(value)) return 'START_ARRAY';
  switch (typeof value) {
    case 'object':
      return 'START_OBJECT';
    case 'string':
      return 'VALUE_STRING';
    case 'number':
      return 'VALUE_NUMBER';
    default:
      return 'VALUE_BOOLEAN';
  }
}

function clip(text: string): string {
  return text.length > QUOTED_CHARS ? `${text.slice(0, QUOTED_CHARS)}…` : text;
}

/**
 * Decodes a `_bulk` body as its bytes arrive; the items are in `items`, in order.
 *
 * An action line that is not an action (not JSON, not an object of one known action
 * whose metadata is an object) makes the whole request malformed, as in Elasticsearch:
 * `malformed` says why, and the rest of the body is not read. Nothing of a body is
 * published before the whole of it is decoded, so refusing it loses nothing acknowledged.
 */
export class BulkStream {
  readonly items: BulkItem[] = [];
  /** Why the body is refused as a whole (Elasticsearch's 400), if it is. */
  malformed: string | undefined;
  /** The action whose document is the next line, and its line. */
  private awaiting: BulkItem | undefined;
  private awaitingLine = 0;
  /** The last `index` / `create` action line read, and what it said. */
  private lastAction: { bytes: Buffer; item: BulkItem } | undefined;
  private readonly lines: LineSplitter;
  /** JSON.parse's messages for the first bad documents, short ones after. */
  private readonly parser = new JsonLineParser();

  constructor(
    private readonly defaultIndex: string | undefined,
    private readonly documents: BulkDocuments,
  ) {
    this.lines = new LineSplitter((buf, start, line) =>
      this.awaiting ? this.document(buf, start, line) : this.action(buf, start, line),
    );
  }

  push(chunk: Buffer): void {
    if (this.malformed === undefined) this.lines.push(chunk);
  }

  end(): void {
    if (this.malformed !== undefined) return;
    this.lines.end();
    const item = this.awaiting;
    if (item) {
      this.awaiting = undefined;
      if (!item.error) item.error = noDocument(item, this.awaitingLine + 1);
    }
  }

  private action(buf: Buffer, start: number, line: number): number {
    const end = lineEnd(buf, start);
    if (this.malformed !== undefined) return end;
    // Shippers repeat one action line (Filebeat's `{"create":{"_index":…}}`): the same
    // bytes as the last one read mean the same action.
    const last = this.lastAction;
    if (last !== undefined && last.bytes.length === end - start) {
      let i = 0;
      while (i < last.bytes.length && last.bytes[i] === buf[start + i]) i++;
      if (i === last.bytes.length) {
        const item: BulkItem = {
          action: last.item.action,
          index: last.item.index,
          id: last.item.id,
        };
        this.items.push(item);
        this.awaiting = item;
        this.awaitingLine = line;
        return end;
      }
    }
    const text = buf.toString('utf8', start, end).trim();
    if (text === '') return end;
    const malformed = (expected: string) => {
      this.malformed = `Malformed action/metadata line [${line}], expected ${expected}`;
      return end;
    };
    let action: unknown;
    try {
      action = JSON.parse(text);
    } catch (err) {
      return malformed(`START_OBJECT but found invalid JSON (${clip((err as Error).message)})`);
    }
    if (tokenOf(action) !== 'START_OBJECT')
      return malformed(`START_OBJECT but found [${tokenOf(action)}]`);
    const names = Object.keys(action as object);
    const name = names[0];
    if (name === undefined) return malformed('FIELD_NAME but found [END_OBJECT]');
    if (name !== 'index' && name !== 'create' && name !== 'update' && name !== 'delete')
      return malformed(`field [create], [delete], [index] or [update] but found [${clip(name)}]`);
    const meta = (action as Record<string, unknown>)[name];
    if (tokenOf(meta) !== 'START_OBJECT')
      return malformed(`START_OBJECT but found [${tokenOf(meta)}]`);
    if (names.length > 1) return malformed('END_OBJECT but found [FIELD_NAME]');
    const { _index, _id } = meta as Record<string, unknown>;
    const index = typeof _index === 'string' ? _index : this.defaultIndex;
    const id = typeof _id === 'string' ? _id : undefined;
    let item: BulkItem;
    if (name === 'delete') {
      this.items.push({
        action: 'delete',
        index,
        id,
        error: {
          type: 'illegal_argument_exception',
          reason: 'Drover ingests; it does not delete documents',
          status: 400,
        },
      });
      return end;
    }
    if (name === 'index' || name === 'create') {
      item = { action: name, index, id };
      this.lastAction = { bytes: Buffer.from(buf.subarray(start, end)), item };
    } else
      // Its document line is still read past (every action but delete carries one).
      item = {
        action: 'update',
        index,
        id,
        error: {
          type: 'illegal_argument_exception',
          reason: `line ${line}: unsupported bulk action "update"; use index or create`,
          status: 400,
        },
      };
    this.items.push(item);
    this.awaiting = item;
    this.awaitingLine = line;
    return end;
  }

  private document(buf: Buffer, start: number, line: number): number {
    const item = this.awaiting!;
    this.awaiting = undefined;
    if (!item.error && this.documents.read) {
      const end = this.documents.read(item, buf, start);
      if (end >= 0) return end;
    }
    const end = lineEnd(buf, start);
    if (item.error) return end;
    const text = buf.toString('utf8', start, end);
    if (text.trim() === '') {
      item.error = noDocument(item, line);
      return end;
    }
    // A bad document is found without a thrown SyntaxError (json-syntax.ts).
    const value = this.parser.parse(text);
    if (value === INVALID) {
      item.error = {
        type: 'document_parsing_exception',
        reason: `line ${line}: failed to parse the document: ${this.parser.error}`,
        status: 400,
      };
      return end;
    }
    this.documents.parsed(item, value);
    return end;
  }
}

function noDocument(item: BulkItem, line: number): BulkItem['error'] {
  return {
    type: 'parse_exception',
    reason: `line ${line}: the ${item.action} action has no document`,
    status: 400,
  };
}

/** Characters of an item's error reason a `_bulk` response echoes, by default. */
export const BULK_REASON_CHARS = 200;
/** Characters of error reasons, all items together, a `_bulk` response echoes by default. */
export const BULK_REASON_BUDGET = 64 * 1024;
/** An item's reason once the response's budget for reasons is spent. */
export const BULK_REASON_OMITTED = 'too many errors to list';

export interface BulkResponseLimits {
  /** Characters of one reason echoed; past it the reason is clipped and its length said. */
  reasonChars?: number;
  /** Characters of reasons echoed in all; past it each reason is BULK_REASON_OMITTED. */
  reasonBudget?: number;
}

/**
 * The `_bulk` response, in request order, as Elasticsearch writes it: each item under its
 * action, with its status and, when it failed, the error. Written as text: a shipper's
 * bulk has hundreds of items, and building an object per item (keyed by its action) cost
 * more than decoding their documents.
 *
 * The protocol needs one item per document, but not every reason in full: a reason may
 * quote what the sender wrote (a refused value), and a megabyte of bad lines is half a
 * million failed items. Each reason is clipped to `reasonChars`, and once `reasonBudget`
 * characters of reasons are written the rest say only BULK_REASON_OMITTED (their type
 * and status still say what failed).
 */
export function encodeBulkResponse(
  items: BulkItem[],
  took: number,
  receivedAt: number,
  limits: BulkResponseLimits = {},
): string {
  const reasonChars = limits.reasonChars ?? BULK_REASON_CHARS;
  let budget = limits.reasonBudget ?? BULK_REASON_BUDGET;
  const reason = (text: string) => {
    if (budget <= 0) return BULK_REASON_OMITTED;
    const shown =
      text.length > reasonChars
        ? `${text.slice(0, reasonChars)}… (${text.length} characters)`
        : text;
    budget -= shown.length;
    return shown;
  };
  const parts: string[] = [];
  let errors = false;
  const quoted = new Map<string, string>();
  const quote = (s: string) => {
    let q = quoted.get(s);
    if (q === undefined) quoted.set(s, (q = JSON.stringify(s)));
    return q;
  };
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    const action = item.action === 'unknown' ? 'index' : item.action;
    const head = `{"${action}":{"_index":${quote(item.index ?? 'drover')},"_id":${
      item.id === undefined ? `"drover-${receivedAt}-${i}"` : JSON.stringify(item.id)
    },`;
    if (item.error) {
      errors = true;
      parts.push(
        `${head}"status":${item.error.status},"error":{"type":${JSON.stringify(item.error.type)},"reason":${JSON.stringify(reason(item.error.reason))}}}}`,
      );
    } else
      parts.push(
        `${head}"_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":${i},"_primary_term":1,"status":201}}`,
      );
  }
  return `{"took":${took},"errors":${errors},"items":[${parts.join(',')}]}`;
}
