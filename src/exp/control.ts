/**
 * The tester's end of `rawpoll sink --serve` (rx/serve.ts has the protocol): a trial is opened on the sink, traffic is
 * sent, the trial is closed and its SinkReport comes back.
 *
 *   const c = await ControlClient.connect('10.0.0.2', 5201, { token });
 *   const trial = await c.open({ port: 9, expect: 100000 });
 *   …blast…
 *   const { report, histograms } = await c.close(trial);
 *   await c.end();
 *
 * Every call has a deadline (timeoutMs) and fails with a ControlError that says which server, which request and why:
 * the server's own refusal (error names the bad value), a timeout, or the connection going away.
 */
import net from 'node:net';
import { RuntimeError } from '../errors.js';
import type { TimestampSource } from '../rx/engine.js';
import type { HistogramsDoc, SinkReport } from '../rx/sink.js';
import type { TrialStatus } from '../rx/serve.js';

export type { TrialStatus } from '../rx/serve.js';

/** Must match rx/serve.ts CONTROL_VERSION (not imported: that module loads the receive engine's addon). */
export const CLIENT_CONTROL_VERSION = 1;

export interface ControlClientOptions {
  /** The server's shared secret (--token / --token-file). */
  token?: string;
  /** How long connecting (TCP and hello) may take, ms. Default 5000. */
  connectTimeoutMs?: number;
  /** How long any one request waits for its reply, ms. Default 15000 (close stops a receive thread and builds the report). */
  timeoutMs?: number;
  /** Longest reply line accepted, bytes (a report lists every flow: a few MB with thousands). Default 256 MiB. */
  maxReplyBytes?: number;
}

/** What the server said in reply to hello. */
export interface ServerHello {
  server: string;
  version: number;
  mode: 'socket' | 'capture';
  /** The receive clock in words (each report names the clock that trial used, too). */
  clock: string;
}

export interface OpenTrial {
  /** UDP port to count, 1-65535. */
  port: number;
  /** Datagrams the sender will send per flow: a lost tail then counts as loss. */
  expect?: number;
  /** Count loss from the first seq seen instead of from seq 1. */
  midStream?: boolean;
  /** The clock that times each datagram (default: the server's --timestamp). */
  timestamp?: TimestampSource;
}

export interface TrialResult {
  report: SinkReport;
  histograms: HistogramsDoc;
}

/** A request that failed. `serverError` is the server's own words when it refused; null for timeouts and lost connections. */
export class ControlError extends RuntimeError {
  constructor(message: string, readonly op: string, readonly serverError: string | null) {
    super(message);
    this.name = 'ControlError';
  }
}

interface Pending {
  op: string;
  resolve: (reply: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class ControlClient {
  /** The server's answer to hello. */
  hello!: ServerHello;
  private readonly where: string;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private parts: Buffer[] = [];
  private held = 0;
  /** The last thing the server said unasked (id null: busy, idle timeout, line too long), or why the connection ended. */
  private notice: string | null = null;
  private ended = false;
  private readonly closedP: Promise<void>;

  private constructor(private readonly socket: net.Socket, host: string, port: number, private readonly o: ControlClientOptions) {
    this.where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.notice ??= e.code === 'ECONNRESET' ? 'connection reset by the server' : e.message;
    });
    this.closedP = new Promise((res) => socket.on('close', () => {
      this.ended = true;
      this.failAll();
      res();
    }));
  }

  /**
   * Connects and says hello (with the token, if given). Rejects with a ControlError naming the server: unreachable,
   * no answer in time, busy (--max-clients), bad token, or another version.
   */
  static async connect(host: string, port: number, options: ControlClientOptions = {}): Promise<ControlClient> {
    const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const ms = options.connectTimeoutMs ?? 5000;
    const socket = await new Promise<net.Socket>((res, rej) => {
      const s = net.connect({ host, port });
      const t = setTimeout(() => {
        s.destroy();
        rej(new ControlError(`cannot reach the sink's control channel at ${where}: no answer within ${ms / 1000} s (is rawpoll sink --serve running there, and the address reachable?)`, 'connect', null));
      }, ms);
      s.once('connect', () => {
        clearTimeout(t);
        s.removeAllListeners('error');
        res(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(t);
        const why = e.code === 'ECONNREFUSED' ? `connection refused (is rawpoll sink --serve ${port} running there?)` : e.message;
        rej(new ControlError(`cannot reach the sink's control channel at ${where}: ${why}`, 'connect', null));
      });
    });
    const c = new ControlClient(socket, host, port, options);
    try {
      const r = await c.request({ op: 'hello', version: CLIENT_CONTROL_VERSION, ...(options.token !== undefined ? { token: options.token } : {}) }, ms);
      c.hello = { server: String(r.server), version: Number(r.version), mode: r.mode as ServerHello['mode'], clock: String(r.clock) };
    } catch (e) {
      c.socket.destroy();
      throw e;
    }
    return c;
  }

  /** Opens a trial: the sink counts `port` from now on. Resolves with the trial's number. */
  async open(t: OpenTrial): Promise<number> {
    const req: Record<string, unknown> = { op: 'open', port: t.port };
    if (t.expect !== undefined) req.expect = t.expect;
    if (t.midStream !== undefined) req.midStream = t.midStream;
    if (t.timestamp !== undefined) req.timestamp = t.timestamp;
    const r = await this.request(req);
    return r.trial as number;
  }

  /** The trial's counts so far (cheap: no histograms). */
  async status(trial: number): Promise<TrialStatus> {
    const { id: _id, ok: _ok, ...s } = await this.request({ op: 'status', trial });
    return s as unknown as TrialStatus;
  }

  /** Stops the trial and returns its report and encoded histograms. */
  async close(trial: number): Promise<TrialResult> {
    const r = await this.request({ op: 'close', trial });
    return { report: r.report as SinkReport, histograms: r.histograms as HistogramsDoc };
  }

  /** Says bye (the server closes this client's trials that are still open) and waits for the connection to close. */
  async end(): Promise<void> {
    if (!this.ended) {
      try {
        await this.request({ op: 'bye' });
      } catch {
        /* gone already: nothing left to close */
      }
      this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), 2000);
      await this.closedP;
      clearTimeout(t);
    }
  }

  /** Drops the connection without bye (the server closes its trials all the same). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.ended;
  }

  /** One request; resolves with the reply when ok, rejects with a ControlError otherwise. */
  request(body: Record<string, unknown>, timeoutMs = this.o.timeoutMs ?? 15000): Promise<Record<string, unknown>> {
    const op = String(body.op);
    if (this.ended) return Promise.reject(this.lost(op));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ControlError(`sink control ${this.where} did not answer ${op} within ${timeoutMs / 1000} s`, op, null));
      }, timeoutMs);
      this.pending.set(id, { op, resolve, reject, timer });
      this.socket.write(JSON.stringify({ op, id, ...body }) + '\n');
    });
  }

  private lost(op: string): ControlError {
    return new ControlError(`sink control ${this.where}: ${op}: the connection closed` + (this.notice ? ` (${this.notice})` : ''), op, this.notice);
  }

  private failAll(): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(this.lost(p.op));
    }
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      const line = this.held ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.held = 0;
      start = nl + 1;
      this.onLine(line.toString('utf8'));
    }
    if (start < chunk.length) {
      this.held += chunk.length - start;
      this.parts.push(Buffer.from(chunk.subarray(start)));
      if (this.held > (this.o.maxReplyBytes ?? 256 << 20)) {
        this.notice = `a reply longer than ${this.o.maxReplyBytes ?? 256 << 20} bytes`;
        this.socket.destroy();
      }
    }
  }

  private onLine(line: string): void {
    if (!line.trim()) return;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch {
      this.notice = `the server sent a line that is not JSON: ${line.slice(0, 60)}`;
      this.socket.destroy();
      return;
    }
    const p = typeof r.id === 'number' ? this.pending.get(r.id) : undefined;
    if (!p) {
      // Unasked (id null): busy, idle timeout, stopping; or a reply that came after its request timed out.
      if (r.ok === false && typeof r.error === 'string') this.notice = r.error;
      return;
    }
    this.pending.delete(r.id as number);
    clearTimeout(p.timer);
    if (r.ok === true) p.resolve(r);
    else {
      const err = typeof r.error === 'string' ? r.error : 'refused, without saying why';
      p.reject(new ControlError(`sink control ${this.where}: ${p.op} refused: ${err}`, p.op, err));
    }
  }
}
