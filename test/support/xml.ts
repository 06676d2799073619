/**
 * A strict well-formedness check of the XML subset Drover writes (elements, attributes in
 * double quotes, text, the predefined entities and character references, an XML
 * declaration), returning the decoded tree. It refuses what an XML 1.0 parser refuses in that
 * subset: characters outside the Char production (control characters, lone surrogates),
 * `<` or a bare `&` in text or attributes, `]]>` in text, mismatched or unclosed tags,
 * duplicate attributes, several root elements.
 */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const XML_CHARS = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
const NAME = '[A-Za-z_:][A-Za-z0-9_:.-]*';

function decode(raw: string, where: string): string {
  if (raw.includes('<')) throw new Error(`${where}: "<" must be escaped`);
  return raw.replace(/&([^;]*);?/g, (whole, ref: string) => {
    if (!whole.endsWith(';')) throw new Error(`${where}: bare "&"`);
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (ref in named) return named[ref]!;
    const m = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(ref);
    if (!m) throw new Error(`${where}: unknown entity &${ref};`);
    const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
    const ch = cp <= 0x10ffff ? String.fromCodePoint(cp) : '';
    if (!ch || !XML_CHARS.test(ch)) throw new Error(`${where}: &${ref}; is not an XML character`);
    return ch;
  });
}

export function parseXml(doc: string): XmlElement {
  if (!XML_CHARS.test(doc)) {
    const bad = [...doc].findIndex((c) => !XML_CHARS.test(c));
    throw new Error(`character outside XML 1.0 at code point index ${bad}`);
  }
  let rest = doc.replace(/^<\?xml[^?]*\?>/, '');
  const tag = new RegExp(`^<(/?)(${NAME})((?:\\s+${NAME}\\s*=\\s*"[^"]*")*)\\s*(/?)>|^([^<]+)`);
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  while (rest.length > 0) {
    const m = tag.exec(rest);
    if (!m) throw new Error(`not well-formed near: ${JSON.stringify(rest.slice(0, 60))}`);
    rest = rest.slice(m[0].length);
    if (m[5] !== undefined) {
      const text = m[5];
      if (text.includes(']]>')) throw new Error('"]]>" in text');
      const top = stack[stack.length - 1];
      if (!top) {
        if (text.trim()) throw new Error('text outside the root element');
        continue;
      }
      // A parser reads a literal CR LF or CR in text as LF (end-of-line handling).
      top.text += decode(text.replace(/\r\n?/g, '\n'), `<${top.name}> text`);
      continue;
    }
    const [, closing, name, rawAttrs, selfClosing] = m;
    if (closing) {
      const open = stack.pop();
      if (!open || open.name !== name) throw new Error(`</${name}> closes <${open?.name}>`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of rawAttrs!.matchAll(new RegExp(`(${NAME})\\s*=\\s*"([^"]*)"`, 'g'))) {
      if (a[1]! in attrs) throw new Error(`duplicate attribute ${a[1]}`);
      // A parser turns literal tabs and newlines in attribute values into spaces.
      attrs[a[1]!] = decode(a[2]!.replace(/[\t\n\r]/g, ' '), `${name}@${a[1]}`);
    }
    const el: XmlElement = { name: name!, attrs, children: [], text: '' };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(el);
    else if (root) throw new Error('several root elements');
    else root = el;
    if (!selfClosing) stack.push(el);
  }
  if (stack.length > 0) throw new Error(`<${stack[stack.length - 1]!.name}> is not closed`);
  if (!root) throw new Error('no root element');
  return root;
}
