import { request } from 'node:http';
import { waitFor } from '../../../protocol/test/helpers/wait-for.js';

export interface SseMessage {
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test answers are checked field by field
  data: any;
}

export interface SseClient {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Every message received, in order. */
  readonly messages: SseMessage[];
  /** Everything received, unparsed (an error answer's JSON body). */
  raw: string;
  /** The response ended (the server closed the stream). */
  ended: boolean;
  /** The first message after index `from` of type `event` for which `check` holds. */
  next(event: string, check?: (data: SseMessage['data']) => boolean, opts?: { from?: number; timeout?: number }): Promise<SseMessage['data']>;
  close(): void;
}

/** A server-sent events client over a real socket (node:http), parsing `event:`/`data:` blocks. */
export function openSse(baseUrl: string, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, baseUrl), { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages: [],
        raw: '',
        ended: false,
        next(event, check = () => true, opts = {}) {
          return waitFor(
            () => client.messages.slice(opts.from ?? 0).find((m) => m.event === event && check(m.data))?.data,
            {
              timeout: opts.timeout ?? 20_000,
              what: () => `SSE ${event} on ${path}; received: ${JSON.stringify(client.messages.slice(-5))}`,
            },
          );
        },
        close() {
          req.destroy();
        },
      };
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        client.raw += chunk;
        buffer += chunk;
        for (let at = buffer.indexOf('\n\n'); at !== -1; at = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) client.messages.push({ event, data: JSON.parse(data.join('\n')) });
        }
      });
      res.on('end', () => {
        client.ended = true;
      });
      res.on('error', () => {
        client.ended = true;
      });
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}
