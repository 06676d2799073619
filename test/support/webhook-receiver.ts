import { createServer } from 'node:http';

/**
 * A real HTTP receiver for the webhook adapter: it answers 202 and keeps each request's
 * JSON body in `pages`, in arrival order (tests empty it with `pages.length = 0`).
 */
export interface WebhookReceiver<Page = Record<string, unknown>> {
  /** The URL to give the webhook adapter. */
  url: string;
  pages: Page[];
  close(): Promise<void>;
}

export async function startWebhookReceiver<Page = Record<string, unknown>>(): Promise<
  WebhookReceiver<Page>
> {
  const pages: Page[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      pages.push(JSON.parse(raw) as Page);
      res.writeHead(202).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    pages,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
