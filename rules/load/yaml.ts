import {
  Document,
  isMap,
  isPair,
  isScalar,
  LineCounter,
  type Node,
  parseAllDocuments,
  visit,
} from 'yaml';

/**
 * YAML read with positions, for rule files and the configuration: every problem is a
 * `Diagnostic` at the node it concerns, printed `file:line:col message`.
 */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  message: string;
  severity: 'error' | 'warning';
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col} ${d.severity === 'warning' ? 'warning: ' : ''}${d.message}`;
}

/** A path into the document: mapping keys and sequence indexes. */
export type Path = Array<string | number>;

export class FileContext {
  readonly diagnostics: Diagnostic[] = [];
  private readonly lc: LineCounter;

  constructor(
    readonly file: string,
    readonly doc: Document,
    lc: LineCounter,
  ) {
    this.lc = lc;
  }

  private pos(offset: number): { line: number; col: number } {
    return this.lc.linePos(offset);
  }

  /** Position of the value at path, or of its key when `key` is set; the nearest ancestor otherwise. */
  at(path: Path, key = false): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let keyNode: Node | undefined;
    let last: { range?: [number, number, number] | null } | undefined = node as never;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isPair(p) && isScalar(p.key) && p.key.value === segment,
        );
        if (!pair) break;
        keyNode = pair.key as Node;
        node = pair.value;
      } else if (
        node &&
        typeof node === 'object' &&
        'items' in node &&
        typeof segment === 'number'
      ) {
        keyNode = undefined;
        node = (node as { items: unknown[] }).items[segment];
      } else break;
      if (node) last = node;
    }
    const target = key && keyNode ? keyNode : last;
    const range = target?.range;
    return this.pos(range ? range[0] : 0);
  }

  error(path: Path, message: string, key = false): void {
    const { line, col } = this.at(path, key);
    this.diagnostics.push({ file: this.file, line, col, message, severity: 'error' });
  }
}

/**
 * The one YAML document of `text`, with its positions; or the diagnostics of a file that
 * is not one document (syntax errors, several documents, an empty file).
 */
export function readYamlDocument(
  text: string,
  file: string,
  what: { empty: string; several: string; allowNone?: boolean },
): { ctx: FileContext; data: unknown } | { diagnostics: Diagnostic[] } {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const diagnostics: Diagnostic[] = [];
  const report = (offset: number, message: string) => {
    const { line, col } = lc.linePos(offset);
    diagnostics.push({ file, line, col, message, severity: 'error' });
  };
  if (!Array.isArray(docs)) {
    report(0, what.empty);
    return { diagnostics };
  }
  if (docs.length === 0) {
    if (what.allowNone) return { ctx: new FileContext(file, new Document(null), lc), data: null };
    report(0, what.empty);
    return { diagnostics };
  }
  for (const doc of docs) for (const e of doc.errors) report(e.pos[0], e.message.split('\n')[0]!);
  if (diagnostics.length > 0) return { diagnostics };
  if (docs.length !== 1) {
    report(docs[1]?.range[0] ?? 0, what.several);
    return { diagnostics };
  }
  const doc = docs[0]!;
  let data: unknown;
  try {
    // yaml refuses aliases that expand past its limit (a "billion laughs" document) by
    // throwing; that is a problem of the file, reported at its first alias.
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    let at = doc.range[0];
    visit(doc, {
      Alias(_, node) {
        at = node.range?.[0] ?? at;
        return visit.BREAK;
      },
    });
    report(at, (err as Error).message);
    return { diagnostics };
  }
  return { ctx: new FileContext(file, doc, lc), data };
}

/** An ajv instancePath as a Path. */
export function pathOf(instancePath: string): Path {
  return instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

export function getIn(obj: unknown, path: Path): unknown {
  let cur = obj;
  for (const p of path)
    cur = cur === null || typeof cur !== 'object' ? undefined : (cur as Record<string, unknown>)[p];
  return cur;
}
