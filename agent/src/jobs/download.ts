import { createHash, type Hash } from 'node:crypto';
import pRetry, { AbortError } from 'p-retry';
import { Agent as UndiciAgent, type Dispatcher, request } from 'undici';
import { AgentError, toAgentError } from '../errors.js';
import { Backoff } from '../connection/backoff.js';
import { sleep } from '../platform/clock.js';
import { downloadDispatcher, providePoolClass } from './download-pool.js';
import type { Clock, RandomSource, Staging } from '../platform/platform.js';

export { DOWNLOAD_CONNECTIONS, DOWNLOAD_KEEP_ALIVE_MS, downloadDispatcher } from './download-pool.js';

export interface DownloadRequest {
  url: string;
  /** Bearer credential from the offer. Sent in the Authorization header only; never logged. */
  token: string;
  /** Declared size (from the offer): the packet must be exactly this long. */
  size: number;
  /** Declared SHA-256 (from the offer). */
  sha256: string;
  staging: Staging;
  /** Staging file name of the packet. */
  name: string;
  /** PEM CA(s) verifying the download server (the connection profile's). */
  caPem: string;
  allowInsecure: boolean;
  /**
   * The connection pool to download through (e.g. the transport's, bound to its source address).
   * Default: one pool per CA shared by the process (`downloadDispatcher`).
   */
  dispatcher?: Dispatcher | undefined;
  /** Durable offset to resume from (bytes already fsynced to `name`). */
  offset: number;
  /** Records a new durable offset (called after fsync). */
  persistOffset: (offset: number) => Promise<void>;
  clock: Clock;
  random: RandomSource;
  /** How each attempt's GET reaches the server. Default: `httpDownloadSource` (undici). */
  source?: DownloadSource | undefined;
  /** Retries after the first attempt. */
  retries: number;
  retryBaseMs: number;
  /** Stall watchdog window and least throughput. */
  stallWindowMs: number;
  minBytesPerSec: number;
  /** fsync + persist the offset every this many bytes. */
  syncBytes: number;
  /** Cancel or stop: aborts at once, keeps what was written (resumable). */
  signal: AbortSignal;
  onProgress?: (bytesDone: number) => void;
  /** Every chunk written, with the packet offset it starts at (lets MANIFEST be checked early). */
  onChunk?: ((chunk: Uint8Array, offset: number) => void) | undefined;
  /** Called before every attempt after the first (logging). */
  onRetry?: (error: AgentError, attempt: number, delayMs: number) => void;
}

/** One answer to a packet GET: status, headers and a body that is read once or discarded. */
export interface DownloadResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Uint8Array>;
  /** Drops the body unread (or the rest of it) without an unhandled error. */
  discard(): void;
}

/**
 * How the downloader sends one GET: the seam where the test platforms put a faulty link
 * (`faultyDownloadSource`) in front of the real one.
 */
export interface DownloadSource {
  get(
    url: string,
    options: { headers: Record<string, string>; dispatcher: Dispatcher; signal: AbortSignal; timeoutMs: number },
  ): Promise<DownloadResponse>;
}

/** The real link: one undici request; `timeoutMs` bounds the wait for headers and between body chunks. */
export const httpDownloadSource: DownloadSource = {
  async get(url, options) {
    const { statusCode, headers, body } = await request(url, {
      method: 'GET',
      headers: options.headers,
      dispatcher: options.dispatcher,
      signal: options.signal,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    return { statusCode, headers, body, discard: () => discard(body) };
  },
};

// The pools are built with undici's Agent, which this module loads (see download-pool.ts).
providePoolClass(UndiciAgent);

/** Drops a response body without an unhandled 'error' (undici reports a destroyed body as aborted). */
function discard(body: NodeJS.ReadableStream & { destroy(): void; on(event: 'error', fn: () => void): unknown }): void {
  body.on('error', () => {});
  body.destroy();
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

/**
 * Downloads a packet into staging: streaming, SHA-256 while writing, resume with `Range` from the
 * durable offset, a stall/throughput watchdog, bounded retries (p-retry; full-jitter delays on the
 * injected clock) and the declared size as a hard limit. Mismatched bytes are never spliced: a
 * wrong answer to a resume restarts from zero. Resolves when the file is complete and its SHA-256
 * matches; rejects with an AgentError (non-retryable ones at once).
 */
export async function downloadPacket(req: DownloadRequest): Promise<void> {
  let offset = req.offset;
  let hash: Hash | undefined;
  let hashedTo = -1;
  const backoff = new Backoff(Math.max(1, req.retryBaseMs), 300_000, req.random);
  /** Retry-After of the last refused attempt (ms), 0 when none. */
  let serverRetryAfterMs = 0;
  const source = req.source ?? httpDownloadSource;
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    throw new AgentError('AGENT_DOWNLOAD_HTTP_STATUS', 'the packet URL is not a URL');
  }
  if (url.protocol !== 'https:' && !(req.allowInsecure && url.protocol === 'http:')) {
    throw new AgentError('AGENT_DOWNLOAD_HTTP_STATUS', `refusing ${url.protocol} download (TLS required)`);
  }

  const restartFromZero = async () => {
    offset = 0;
    hash = undefined;
    hashedTo = -1;
    await req.persistOffset(0);
  };

  const attempt = async (): Promise<void> => {
    // What is durably on disk decides where we resume; data beyond the recorded offset is dropped.
    const onDisk = (await req.staging.size(req.name)) ?? 0;
    if (onDisk < offset) await restartFromZero();
    if (!hash || hashedTo !== offset) {
      hash = createHash('sha256');
      if (offset > 0) {
        let seen = 0;
        for await (const chunk of req.staging.read(req.name)) {
          const take = Math.min(chunk.length, offset - seen);
          hash.update(chunk.subarray(0, take));
          seen += take;
          if (seen >= offset) break;
        }
        if (seen < offset) {
          await restartFromZero();
          hash = createHash('sha256');
        }
      }
      hashedTo = offset;
    }
    // Every byte is on disk already (the offer came again, e.g. from another server host after the
    // one that sent it died, once the bytes were in but before the result was reported): nothing is
    // left to ask for, and a Range starting at the size is unsatisfiable (416). Verify what is here.
    if (req.size > 0 && offset >= req.size) {
      if (hash.digest('hex') === req.sha256.toLowerCase()) {
        hash = undefined;
        return;
      }
      await req.staging.remove(req.name);
      await restartFromZero();
      hash = createHash('sha256');
      hashedTo = 0;
    }
    let writer = await req.staging.openWriter(req.name, offset);
    const attemptAbort = new AbortController();
    const onOuterAbort = () => attemptAbort.abort(req.signal.reason);
    req.signal.addEventListener('abort', onOuterAbort, { once: true });
    let windowBytes = 0;
    const minWindowBytes = (req.minBytesPerSec * req.stallWindowMs) / 1000;
    const check = (): void => {
      if (windowBytes < minWindowBytes) {
        attemptAbort.abort(new AgentError('AGENT_DOWNLOAD_STALLED', `less than ${req.minBytesPerSec} B/s over ${req.stallWindowMs} ms`));
        return;
      }
      windowBytes = 0;
      watchdog = req.clock.setTimer(req.stallWindowMs, check);
    };
    let watchdog = req.clock.setTimer(req.stallWindowMs, check);
    let sinceSync = 0;
    let streaming = false;
    try {
      const response = await source.get(req.url, {
        headers: { authorization: `Bearer ${req.token}`, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) },
        dispatcher: req.dispatcher ?? downloadDispatcher({ caPem: req.caPem }),
        signal: attemptAbort.signal,
        timeoutMs: req.stallWindowMs,
      });
      const { statusCode, headers, body } = response;
      const header = (name: string) => {
        const v = headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      const length = header('content-length') === undefined ? undefined : Number(header('content-length'));
      if (statusCode === 206) {
        const m = CONTENT_RANGE.exec(header('content-range') ?? '');
        if (!m) {
          response.discard();
          await restartFromZero();
          throw new AgentError('AGENT_DOWNLOAD_BAD_RANGE', 'a 206 without a valid Content-Range');
        }
        if (m[3] !== '*' && Number(m[3]) !== req.size) {
          response.discard();
          throw new AgentError('AGENT_DOWNLOAD_SIZE_MISMATCH', `the server's packet is ${m[3]} bytes, the offer said ${req.size}`);
        }
        if (Number(m[1]) !== offset || Number(m[2]) !== req.size - 1) {
          response.discard();
          await restartFromZero();
          throw new AgentError('AGENT_DOWNLOAD_BAD_RANGE', `asked for bytes ${offset}-, got ${m[1]}-${m[2]}`);
        }
      } else if (statusCode === 200) {
        if (length !== undefined && length !== req.size) {
          response.discard();
          throw new AgentError('AGENT_DOWNLOAD_SIZE_MISMATCH', `the server's packet is ${length} bytes, the offer said ${req.size}`);
        }
        if (offset > 0) {
          // The server ignored Range: take the full body, from zero.
          await writer.close();
          await restartFromZero();
          hash = createHash('sha256');
          hashedTo = 0;
          writer = await req.staging.openWriter(req.name, 0);
        }
      } else {
        response.discard();
        const retryable = statusCode === 408 || statusCode === 429 || statusCode >= 500;
        if (!retryable) throw new AgentError('AGENT_DOWNLOAD_HTTP_STATUS', `HTTP ${statusCode}`);
        // A busy server (503/429 with Retry-After, e.g. its download cap) says when to come back.
        const retryAfterSec = Number(headers['retry-after']);
        serverRetryAfterMs = Number.isFinite(retryAfterSec) && retryAfterSec >= 0 ? Math.min(retryAfterSec, 3600) * 1000 : 0;
        throw new AgentError('AGENT_DOWNLOAD_FAILED', `HTTP ${statusCode}`);
      }
      streaming = true;
      for await (const raw of body) {
        let chunk: Uint8Array = raw;
        const remaining = req.size - offset;
        const tooLong = chunk.length > remaining;
        if (tooLong) chunk = chunk.subarray(0, remaining);
        if (chunk.length > 0) {
          await writer.write(chunk);
          req.onChunk?.(chunk, offset);
          hash.update(chunk);
          offset += chunk.length;
          hashedTo = offset;
          windowBytes += chunk.length;
          sinceSync += chunk.length;
          req.onProgress?.(offset);
        }
        if (tooLong) {
          response.discard();
          throw new AgentError('AGENT_DOWNLOAD_TOO_LONG', `the server sent more than the declared ${req.size} bytes`);
        }
        if (sinceSync >= req.syncBytes) {
          await writer.sync();
          await req.persistOffset(offset);
          sinceSync = 0;
        }
      }
    } catch (error) {
      if (attemptAbort.signal.aborted) {
        const reason = attemptAbort.signal.reason;
        if (req.signal.aborted) throw new AbortError(toAgentError(req.signal.reason));
        if (reason instanceof AgentError) throw reason;
      }
      const agentError = toAgentError(error, streaming ? 'AGENT_DOWNLOAD_INTERRUPTED' : 'AGENT_DOWNLOAD_FAILED');
      if (!(error instanceof AgentError)) (agentError as { retryable: boolean }).retryable = true;
      throw agentError;
    } finally {
      watchdog.cancel();
      req.signal.removeEventListener('abort', onOuterAbort);
      try {
        await writer.sync();
        await writer.close();
      } catch {
        // the file may already be closed
      }
      if (offset > 0 && offset <= req.size) await req.persistOffset(offset).catch(() => {});
    }
    if (offset < req.size) throw new AgentError('AGENT_DOWNLOAD_INTERRUPTED', `the response ended at ${offset} of ${req.size} bytes`);
    const digest = hash.digest('hex');
    hash = undefined;
    if (digest !== req.sha256.toLowerCase()) {
      await req.staging.remove(req.name);
      await restartFromZero();
      throw new AgentError('AGENT_DOWNLOAD_HASH_MISMATCH', 'the packet SHA-256 differs from the offer');
    }
  };

  await pRetry(
    async () => {
      try {
        await attempt();
      } catch (error) {
        const e = toAgentError(error);
        if (error instanceof AbortError) throw error;
        if (!e.retryable) throw new AbortError(e);
        throw e;
      }
    },
    {
      retries: req.retries,
      minTimeout: 0,
      factor: 1,
      signal: req.signal,
      onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft <= 0) return;
        // Honour the server's Retry-After (plus up to 50 % jitter so refused devices do not return
        // together), never less than our own backoff.
        const delay = Math.max(backoff.next(), serverRetryAfterMs * (1 + 0.5 * req.random.next()));
        serverRetryAfterMs = 0;
        req.onRetry?.(toAgentError(error), attemptNumber, delay);
        await sleep(req.clock, delay, req.signal);
      },
    },
  ).catch((error: unknown) => {
    if (req.signal.aborted) throw req.signal.reason;
    throw toAgentError(error, 'AGENT_DOWNLOAD_FAILED');
  });
}
