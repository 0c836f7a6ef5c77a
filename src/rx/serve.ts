/**
 * `rawpoll sink --serve [IP:]PORT`: the sink as a long-lived trial server. A tester (rawpoll rfc2544, exp/control.ts)
 * opens a trial on a UDP port, blasts into it, closes it and gets that trial's SinkReport back. The model is iperf3's
 * control channel (a TCP connection beside the test traffic); the protocol is ours, one JSON object per line:
 *
 *   → {"op":"hello","id":1,"version":1,"token":"…"}       ← {"id":1,"ok":true,"server":"rawpoll sink","version":1,"mode":…,"clock":…}
 *   → {"op":"open","id":2,"port":9,"expect":1000}           ← {"id":2,"ok":true,"trial":1,"port":9}
 *   → {"op":"status","id":3,"trial":1}                      ← {"id":3,"ok":true,"trial":1,"state":"running","received":…,"lost":…,…}
 *   → {"op":"close","id":4,"trial":1}                       ← {"id":4,"ok":true,"trial":1,"report":{…},"histograms":{…}}
 *   → {"op":"bye","id":5}                                   ← {"id":5,"ok":true,"closed":[]}   (then the server ends the connection)
 *
 * Any failure: {"id":…,"ok":false,"error":"<the bad value and what is valid>"}; a reply to a line whose id could not be
 * read, or a notice the server sends unasked (busy, idle timeout), has "id":null.
 *
 * Two halves: the line protocol (LineSplitter, parseRequest, encodeReply: pure, no I/O, unit-tested on their own) and
 * TrialServer, which owns the TCP listener, the connections and the trials' Sinks. Everything a client sends is
 * bounded (line length, clients, trials, a trial's life, idle time) and a bad message costs that client one error reply,
 * never the server or another client.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { RuntimeError, UsageError } from '../errors.js';
import { RxEngine, TIMESTAMP_SOURCES, type TimestampSource } from './engine.js';
import { Sink, udpSocketDrops, type HistogramsDoc, type SinkOptions, type SinkReport } from './sink.js';
import { formatIpv4 } from '../wire/addr.js';
import type { FlowSums } from './sinkaccount.js';

export const CONTROL_VERSION = 1;
export const SERVER_NAME = 'rawpoll sink';

/** The bounds of `--serve`, with their defaults (README, "sink --serve"). Seconds may be fractional. */
export interface ServeLimits {
  /** Control connections at once (--max-clients); one more is told the server is busy and closed. */
  maxClients: number;
  /** Trials at once over all clients (--max-trials); a trial counts until its client closes it or disconnects. */
  maxTrials: number;
  /** A trial's longest life (--max-trial-seconds): then it stops receiving; its report waits for the client's close. */
  maxTrialSeconds: number;
  /** A control connection with no traffic either way for this long is closed, and its trials with it (--control-timeout). */
  idleSeconds: number;
  /** A connection must say hello within this long (so unauthenticated connections cannot hold the client slots). */
  helloSeconds: number;
  /** Longest request line in bytes, newline excluded; a longer one gets an error reply and the connection is closed. */
  maxLineBytes: number;
}

export const SERVE_DEFAULTS: Readonly<ServeLimits> = {
  maxClients: 8,
  maxTrials: 4,
  maxTrialSeconds: 3600,
  idleSeconds: 300,
  helloSeconds: 10,
  maxLineBytes: 64 * 1024,
};

// ---------------------------------------------------------------------------------------------------------------
// The line protocol (pure).

/** The client's id for a request, echoed in the reply: an integer or a short string; null when it could not be read. */
export type RequestId = number | string | null;

export type ControlRequest =
  | { op: 'hello'; id: RequestId; version: number; token?: string }
  | { op: 'open'; id: RequestId; port: number; expect?: number; midStream?: boolean; timestamp?: TimestampSource }
  | { op: 'status'; id: RequestId; trial: number }
  | { op: 'close'; id: RequestId; trial: number }
  | { op: 'bye'; id: RequestId };

export type ControlOp = ControlRequest['op'];

/** The fields each op takes (besides op and id); anything else is refused, so a misspelt `expect` is not ignored. */
export const OP_FIELDS: Readonly<Record<ControlOp, readonly string[]>> = {
  hello: ['version', 'token'],
  open: ['port', 'expect', 'midStream', 'timestamp'],
  status: ['trial'],
  close: ['trial'],
  bye: [],
};

export const OPS = Object.keys(OP_FIELDS) as ControlOp[];

/** The longest string id and token taken. */
export const MAX_ID_CHARS = 64;
export const MAX_TOKEN_CHARS = 1024;
/** The --expect bound of `rawpoll sink` (the pktgen seq is 32 bits). */
export const MAX_EXPECT = 2 ** 32 - 1;

/** A request the server cannot act on; `id` is the request's, when it could be read. */
export class ProtocolError extends Error {
  constructor(readonly id: RequestId, message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** A line longer than the limit: the connection cannot be resynchronised cheaply, so it is closed after the reply. */
export class LineTooLongError extends Error {
  constructor(readonly limit: number) {
    super(`request line longer than ${limit} bytes: one JSON object per line, at most ${limit} bytes; closing`);
    this.name = 'LineTooLongError';
  }
}

/**
 * Splits a byte stream at \n into lines of at most `maxBytes` (a trailing \r is dropped, blank lines are skipped).
 * Holds at most one partial line, so memory stays bounded whatever the peer sends.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private held = 0;

  constructor(readonly maxBytes: number) {}

  /** The complete lines in `chunk` (with what was held before); throws LineTooLongError past the limit. */
  push(chunk: Buffer): Buffer[] {
    const lines: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (this.held + piece.length > this.maxBytes + 1) throw new LineTooLongError(this.maxBytes);
      let line = this.held ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.held = 0;
      if (line.length && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
      if (line.length > this.maxBytes) throw new LineTooLongError(this.maxBytes);
      if (line.length) lines.push(line);
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length) {
      // +1: a \r may still come before the \n.
      if (this.held + rest.length > this.maxBytes + 1) throw new LineTooLongError(this.maxBytes);
      this.parts.push(Buffer.from(rest)); // a copy: the socket's chunk is not ours to hold
      this.held += rest.length;
    }
    return lines;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A value as an error message shows it: JSON, cut short. */
export function shown(v: unknown): string {
  let s: string;
  if (typeof v === 'number') return String(v); // JSON would show Infinity as null
  try {
    s = v === undefined ? 'undefined' : JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'number' && !Number.isFinite(v)) return 'a number out of range';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'string') return 'a string';
  return `a ${typeof v}`;
}

/** An integer field lo..hi, or a ProtocolError naming the value and the range. */
function intField(id: RequestId, op: string, name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    const what = typeof v === 'number' && Number.isFinite(v) ? '' : ` (${typeName(v)})`;
    throw new ProtocolError(id, `bad ${name} ${shown(v)}${what} in ${op}: expected an integer ${lo}-${hi}`);
  }
  return v;
}

/**
 * One request line → a request, or a ProtocolError that says what was wrong and what is valid (with the request's
 * id when it could be read). Accepts the bytes of a line (must be UTF-8) or its text.
 */
export function parseRequest(line: Buffer | string): ControlRequest {
  let text: string;
  if (typeof line === 'string') text = line;
  else {
    try {
      text = utf8.decode(line);
    } catch {
      throw new ProtocolError(null, 'request is not UTF-8 text: send one JSON object per line, UTF-8');
    }
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    // V8 words it "Unexpected token … in JSON at position N"; a very deep nesting is a RangeError: same answer.
    const why = e instanceof SyntaxError ? e.message : 'nested too deeply';
    throw new ProtocolError(null, `bad JSON (${why}): send one JSON object per line, like {"op":"hello","id":1,"version":1}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ProtocolError(null, `expected a JSON object like {"op":"hello","id":1,"version":1}, got ${typeName(v)}`);
  }
  const o = v as Record<string, unknown>;
  const has = (k: string) => Object.hasOwn(o, k);
  let id: RequestId = null;
  if (has('id')) {
    const i = o.id;
    const okNumber = typeof i === 'number' && Number.isSafeInteger(i);
    const okString = typeof i === 'string' && i.length <= MAX_ID_CHARS;
    if (!okNumber && !okString) {
      throw new ProtocolError(null, `bad id ${shown(i)} (${typeName(i)}): expected an integer or a string of at most ${MAX_ID_CHARS} characters`);
    }
    id = i as number | string;
  }
  if (!has('op')) throw new ProtocolError(id, `no op: expected "op" one of ${OPS.join(', ')}`);
  const op = o.op;
  if (typeof op !== 'string' || !Object.hasOwn(OP_FIELDS, op)) {
    throw new ProtocolError(id, `unknown op ${shown(op)}: expected one of ${OPS.join(', ')}`);
  }
  const cop = op as ControlOp;
  if (!has('id') && cop !== 'bye') {
    throw new ProtocolError(null, `no id in ${cop}: every request but bye carries an "id" (an integer or a short string), echoed in its reply`);
  }
  const fields = OP_FIELDS[cop];
  for (const k of Object.keys(o)) {
    if (k !== 'op' && k !== 'id' && !fields.includes(k)) {
      throw new ProtocolError(id, `unknown field ${shown(k)} in ${cop}: it takes ${['op', 'id', ...fields].join(', ')}`);
    }
  }
  switch (cop) {
    case 'hello': {
      if (!has('version')) throw new ProtocolError(id, `no version in hello: expected "version":${CONTROL_VERSION}`);
      const version = intField(id, 'hello', 'version', o.version, 0, Number.MAX_SAFE_INTEGER);
      const r: ControlRequest = { op: 'hello', id, version };
      if (has('token')) {
        const t = o.token;
        if (typeof t !== 'string' || t.length > MAX_TOKEN_CHARS) {
          throw new ProtocolError(id, `bad token (${typeName(t)}${typeof t === 'string' ? ` of ${t.length} characters` : ''}): expected a string of at most ${MAX_TOKEN_CHARS} characters`);
        }
        r.token = t;
      }
      return r;
    }
    case 'open': {
      if (!has('port')) throw new ProtocolError(id, 'no port in open: expected "port", the UDP port to count, 1-65535');
      const r: ControlRequest = { op: 'open', id, port: intField(id, 'open', 'port', o.port, 1, 65535) };
      if (has('expect') && o.expect !== null) r.expect = intField(id, 'open', 'expect', o.expect, 1, MAX_EXPECT);
      if (has('midStream') && o.midStream !== null) {
        if (typeof o.midStream !== 'boolean') throw new ProtocolError(id, `bad midStream ${shown(o.midStream)} in open: expected true or false`);
        r.midStream = o.midStream;
      }
      if (has('timestamp') && o.timestamp !== null) {
        if (typeof o.timestamp !== 'string' || !TIMESTAMP_SOURCES.includes(o.timestamp as TimestampSource)) {
          throw new ProtocolError(id, `bad timestamp ${shown(o.timestamp)} in open: expected one of ${TIMESTAMP_SOURCES.join(', ')}`);
        }
        r.timestamp = o.timestamp as TimestampSource;
      }
      return r;
    }
    case 'status':
    case 'close':
      if (!has('trial')) throw new ProtocolError(id, `no trial in ${cop}: expected "trial", the number open replied with`);
      return { op: cop, id, trial: intField(id, cop, 'trial', o.trial, 1, Number.MAX_SAFE_INTEGER) };
    case 'bye':
      return { op: 'bye', id };
  }
}

/** A reply line: `{"id":…,"ok":true,…body}` (id and ok first, so a human reading the stream sees them first). */
export function encodeReply(id: RequestId, body: Record<string, unknown> = {}): string {
  const { id: _id, ok: _ok, ...rest } = body;
  return JSON.stringify({ id, ok: true, ...rest }) + '\n';
}

/** An error reply line. */
export function encodeError(id: RequestId, error: string): string {
  return JSON.stringify({ id, ok: false, error }) + '\n';
}

/** Compares a presented token with the server's in constant time (both hashed first, so lengths do not leak either). */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------------------------------
// The server.

/** The Sink options every trial shares (the server's flags); a trial's request adds port, expect, midStream, timestamp. */
export type TrialDefaults = Pick<SinkOptions, 'bind' | 'bind6' | 'capture' | 'iface' | 'rcvbuf' | 'timestamp' | 'maxFlows'>;

export interface TrialServerOptions {
  /** Where to listen: no host = every address (as `iperf3 -s`); port 0 = a free one (address() says which). */
  host?: string;
  port: number;
  /** Shared secret a client's hello must carry. */
  token?: string;
  trial?: TrialDefaults;
  limits?: Partial<ServeLimits>;
  /** Trial and client events, for the CLI's log. */
  onEvent?: (e: ServeEvent) => void;
}

/** Why a trial stopped receiving: its client closed it, said bye, went away, its life ran out, or the server stopped. */
export type TrialEnd = 'closed' | 'bye' | 'client-gone' | 'max-trial-seconds' | 'server-stopped';

export type ServeEvent =
  | { event: 'client-connected'; client: string; clients: number }
  /** Turned away: busy, stopping, or a missing/wrong token. */
  | { event: 'client-refused'; client: string; why: string }
  | { event: 'client-closed'; client: string; why: string }
  | { event: 'trial-opened'; trial: number; client: string; port: number; expect: number | null; midStream: boolean; timestamp: TimestampSource }
  | { event: 'trial-closed'; trial: number; client: string; port: number; reason: string; report: SinkReport };

interface Trial {
  id: number;
  port: number;
  owner: Connection;
  /** null while its Sink starts. */
  sink: Sink | null;
  timer: NodeJS.Timeout | null;
  /** Date.now() when its sink started. */
  startedMs: number;
  /** The final report once the sink stopped (for whatever reason); the client's close collects it. */
  final: SinkReport | null;
}

/** What every trial since start() received, ended ones and running ones together (for --metrics). */
export interface ServeTotals {
  /** UDP datagrams seen on trial ports (pktgen or not). */
  datagrams: number;
  /** UDP payload bytes of the datagrams accounted in flows. */
  bytes: number;
  /** Datagrams not counted, by reason: non-pktgen (no pktgen magic), flows-over-budget, flows-evicted. */
  refused: Record<string, number>;
  /** The kernel's drops for the trials' sockets or capture rings (a running capture trial's count comes at its end). */
  ownDrops: number;
  /** Source addresses of the flows (bounded at MAX_SOURCES_SEEN). */
  hosts: number;
}

const MAX_SOURCES_SEEN = 65536;

/** The status reply's figures. */
export interface TrialStatus extends FlowSums {
  trial: number;
  /** 'running', or 'ended' once it stopped receiving (its life ran out, or its interface disappeared): close collects the report. */
  state: 'running' | 'ended';
  reason: string;
  seconds: number;
}

/**
 * A control peer as the rest of rawpoll writes endpoints: 10.0.0.1:40000, [fd00::1]:40000. A dual-stack listener
 * sees an IPv4 peer as ::ffff:10.0.0.1: written as the IPv4 address it is.
 */
function peerName(socket: { remoteAddress?: string; remotePort?: number }): string {
  const a = (socket.remoteAddress ?? '?').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
  return a.includes(':') ? `[${a}]:${socket.remotePort}` : `${a}:${socket.remotePort}`;
}

/** A control connection; `who` is its peer's ip:port ([ip]:port for IPv6). */
class Connection {
  readonly who: string;
  authed = false;
  closed = false;
  readonly trials = new Map<number, Trial>();
  private readonly splitter: LineSplitter;
  private readonly queue: Buffer[] = [];
  private pumping = false;

  constructor(readonly server: TrialServer, readonly socket: net.Socket) {
    this.who = peerName(socket);
    this.splitter = new LineSplitter(server.limits.maxLineBytes);
    socket.setNoDelay(true);
    socket.setTimeout(server.limits.helloSeconds * 1000);
    socket.on('timeout', () => {
      const s = this.authed ? server.limits.idleSeconds : server.limits.helloSeconds;
      this.fail(this.authed ? `no request for ${s} s (idle timeout): closing` : `no hello within ${s} s: closing`, 'timeout');
    });
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => {}); // ECONNRESET and the like: 'close' follows
    socket.on('end', () => void this.gone('client-gone', 'client ended the connection'));
    socket.on('close', () => void this.gone('client-gone', 'connection closed'));
  }

  send(line: string): void {
    if (!this.closed && this.socket.writable) this.socket.write(line);
  }

  /** An error reply (id null), then the connection is closed: the trials with it. */
  fail(error: string, why: string): void {
    if (this.closed) return;
    this.send(encodeError(null, error));
    void this.gone('client-gone', why);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return; // draining what a closed client still sends
    let lines: Buffer[];
    try {
      lines = this.splitter.push(chunk);
    } catch (e) {
      this.queue.length = 0;
      this.fail((e as Error).message, 'request line too long');
      return;
    }
    if (!lines.length) return;
    for (const l of lines) this.queue.push(l); // not push(...lines): a chunk of tiny lines is tens of thousands
    // Read no more until these are answered: a client cannot queue up work (or replies) faster than it is served.
    this.socket.pause();
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length && !this.closed) {
        const line = this.queue.shift()!;
        await this.server.handle(this, line);
        if (this.socket.writableNeedDrain && !this.closed) {
          // A client that does not read its replies waits here; the idle timeout ends it if it never does.
          await new Promise<void>((res) => {
            const done = () => {
              this.socket.removeListener('drain', done);
              this.socket.removeListener('close', done);
              res();
            };
            this.socket.once('drain', done);
            this.socket.once('close', done);
          });
        }
      }
    } finally {
      this.pumping = false;
    }
    if (!this.closed) this.socket.resume();
  }

  /**
   * Ends the connection: its trials are stopped (their reports dropped), then the socket is ended after the replies
   * already written. What the client still sends is read and dropped, so its kernel does not answer our last reply
   * with a reset that would destroy it; a client that keeps sending is cut off after a second.
   */
  async gone(end: TrialEnd, why: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.socket.setTimeout(0);
    this.socket.resume();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    await this.server.dropConnection(this, end, why);
  }
}

/**
 * The trial server: `const s = new TrialServer({port: 5201}); const where = await s.start(); …; await s.stop()`.
 * start() first opens (and at once closes) a receive engine with the trials' settings, so a bad interface, no
 * permission or an unavailable --bind address fail there, before anything listens, and hello can name the clock.
 */
export class TrialServer {
  readonly limits: ServeLimits;
  readonly options: TrialServerOptions;
  readonly mode: 'socket' | 'capture';
  /** The receive clock in words (set by start()). */
  clock = '';
  clockWarning: string | null = null;
  private readonly server: net.Server;
  private readonly conns = new Set<Connection>();
  private readonly trials = new Map<number, Trial>();
  private nextTrial = 1;
  /** Trials opened since start(). */
  trialsServed = 0;
  private stopping: Promise<void> | null = null;
  private readonly expectedToken: string | undefined;
  /** Totals of the trials whose sinks have stopped, and the sinks still receiving: metrics() adds both. */
  private readonly ended = { datagrams: 0, bytes: 0, ownDrops: 0, refused: { 'non-pktgen': 0, 'flows-over-budget': 0, 'flows-evicted': 0 } as Record<string, number> };
  private readonly live = new Set<Sink>();
  private readonly sources = new Set<string>();

  constructor(options: TrialServerOptions) {
    this.options = options;
    this.limits = { ...SERVE_DEFAULTS };
    for (const [k, v] of Object.entries(options.limits ?? {}) as [keyof ServeLimits, number | undefined][]) {
      if (v === undefined) continue; // a flag not given keeps its default
      if (!(typeof v === 'number' && v > 0)) throw new UsageError(`bad ${k} ${v}: expected a number > 0`);
      this.limits[k] = v;
    }
    this.mode = options.trial?.capture ? 'capture' : 'socket';
    if (options.token !== undefined && options.token.length === 0) throw new UsageError('empty --token: give a shared secret, or no --token');
    this.expectedToken = options.token;
    this.server = net.createServer((s) => this.accept(s));
  }

  private emit(e: ServeEvent): void {
    try {
      this.options.onEvent?.(e);
    } catch {
      /* a logger's failure is not the protocol's */
    }
  }

  /** Probes the receive path, then listens. Resolves with the address listened on. */
  async start(): Promise<{ address: string; port: number }> {
    const t = this.options.trial ?? {};
    const common = { mode: 'pktgen' as const, timestamp: t.timestamp ?? 'kernel' };
    // Socket: a free port on the --bind address (or loopback); capture: a filter no frame passes ('less 1').
    const probe = t.capture
      ? RxEngine.capture({ ...common, port: 9, iface: t.capture.iface, filter: 'less 1', bufferSize: 1 << 20 }, () => {})
      : t.bind6 !== undefined
        ? RxEngine.socket({ ...common, port: 0, family: 'dual', bind6: t.bind6, iface: t.iface }, () => {})
        : RxEngine.socket({ ...common, port: 0, bind: t.bind ?? 0x7f000001, iface: t.iface }, () => {});
    this.clock = probe.handle.clock;
    this.clockWarning = probe.handle.warning;
    await probe.stop();
    await new Promise<void>((res, rej) => {
      const onError = (e: NodeJS.ErrnoException) => {
        const where = `${this.options.host ?? '*'}:${this.options.port}`;
        if (e.code === 'EADDRINUSE') rej(new RuntimeError(`cannot serve on TCP ${where}: already in use (another rawpoll sink --serve, or iperf3?)`));
        else if (e.code === 'EADDRNOTAVAIL') rej(new UsageError(`bad --serve address '${this.options.host}': no interface here has it`));
        else if (e.code === 'EACCES') rej(new RuntimeError(`no permission to listen on TCP ${where}: ports below 1024 need root`));
        else rej(new RuntimeError(`cannot serve on TCP ${where}: ${e.message}`));
      };
      this.server.once('error', onError);
      this.server.listen({ host: this.options.host, port: this.options.port, exclusive: true }, () => {
        this.server.removeListener('error', onError);
        res();
      });
    });
    this.server.on('error', () => {}); // after listening, accept errors (EMFILE) must not end the process
    return this.address()!;
  }

  address(): { address: string; port: number } | null {
    const a = this.server.address();
    return a && typeof a === 'object' ? { address: a.address, port: a.port } : null;
  }

  /** Control connections now. */
  get clients(): number {
    return this.conns.size;
  }

  /** Trials now (running, or ended and waiting for their client's close). */
  get openTrials(): number {
    return this.trials.size;
  }

  private accept(socket: net.Socket): void {
    const who = peerName(socket);
    if (this.stopping || this.conns.size >= this.limits.maxClients) {
      const why = this.stopping
        ? 'server stopping'
        : `server busy: ${this.conns.size} clients connected (--max-clients ${this.limits.maxClients}); try again later`;
      socket.on('error', () => {});
      socket.end(encodeError(null, why));
      setTimeout(() => socket.destroy(), 1000).unref();
      socket.resume();
      this.emit({ event: 'client-refused', client: who, why });
      return;
    }
    const c = new Connection(this, socket);
    this.conns.add(c);
    this.emit({ event: 'client-connected', client: c.who, clients: this.conns.size });
  }

  /** Called once per connection as it closes: its trials stop, their reports are dropped. */
  async dropConnection(c: Connection, end: TrialEnd, why: string): Promise<void> {
    this.conns.delete(c);
    this.emit({ event: 'client-closed', client: c.who, why });
    await Promise.all([...c.trials.values()].map((t) => this.endTrial(t, end)));
  }

  /** Answers one request line; never throws (an unexpected failure is an error reply too). */
  async handle(c: Connection, line: Buffer): Promise<void> {
    let req: ControlRequest;
    try {
      req = parseRequest(line);
    } catch (e) {
      const pe = e as ProtocolError;
      c.send(encodeError(pe instanceof ProtocolError ? pe.id : null, pe.message));
      return;
    }
    try {
      await this.dispatch(c, req);
    } catch (e) {
      const msg = e instanceof ProtocolError || e instanceof UsageError || e instanceof RuntimeError
        ? e.message
        : `internal error in ${req.op}: ${(e as Error)?.message ?? String(e)}`;
      c.send(encodeError(req.id, msg));
    }
  }

  private async dispatch(c: Connection, req: ControlRequest): Promise<void> {
    if (req.op === 'hello') return this.hello(c, req);
    if (!c.authed) {
      throw new ProtocolError(req.id, `${req.op} before hello: the first request must be {"op":"hello","id":…,"version":${CONTROL_VERSION}${this.expectedToken !== undefined ? ',"token":"…"' : ''}}`);
    }
    switch (req.op) {
      case 'open':
        return this.open(c, req);
      case 'status':
        c.send(encodeReply(req.id, { ...this.status(this.ownTrial(c, req.id, req.trial)) }));
        return;
      case 'close': {
        const t = this.ownTrial(c, req.id, req.trial);
        const { report, histograms } = await this.collect(t);
        c.send(encodeReply(req.id, { trial: t.id, report, histograms }));
        return;
      }
      case 'bye': {
        const ids = [...c.trials.keys()];
        await Promise.all([...c.trials.values()].map((t) => this.endTrial(t, 'bye')));
        c.send(encodeReply(req.id, { closed: ids }));
        await c.gone('bye', 'bye');
        return;
      }
    }
  }

  private hello(c: Connection, req: Extract<ControlRequest, { op: 'hello' }>): void {
    if (c.authed) throw new ProtocolError(req.id, 'hello again: this connection already said hello; send open, status, close or bye');
    if (this.expectedToken !== undefined && !tokenMatches(req.token, this.expectedToken)) {
      c.send(encodeError(req.id, 'bad token'));
      this.emit({ event: 'client-refused', client: c.who, why: req.token === undefined ? 'no token' : 'bad token' });
      void c.gone('client-gone', 'bad token');
      return;
    }
    if (req.version !== CONTROL_VERSION) {
      throw new ProtocolError(req.id, `unsupported version ${req.version}: this server speaks version ${CONTROL_VERSION}`);
    }
    c.authed = true;
    c.socket.setTimeout(this.limits.idleSeconds * 1000);
    c.send(encodeReply(req.id, { server: SERVER_NAME, version: CONTROL_VERSION, mode: this.mode, clock: this.clock }));
  }

  /** The client's own trial, or a ProtocolError naming the ones it has (another client's trial is not its to see). */
  private ownTrial(c: Connection, id: RequestId, trial: number): Trial {
    const t = c.trials.get(trial);
    if (!t || !t.sink) {
      const mine = [...c.trials.values()].filter((x) => x.sink).map((x) => x.id);
      throw new ProtocolError(id, `no trial ${trial} on this connection: ${mine.length ? `its trials are ${mine.join(', ')}` : 'it has none open'}`);
    }
    return t;
  }

  private async open(c: Connection, req: Extract<ControlRequest, { op: 'open' }>): Promise<void> {
    if (this.trials.size >= this.limits.maxTrials) {
      throw new ProtocolError(req.id, `${this.trials.size} trials open, the most this server takes at once (--max-trials ${this.limits.maxTrials}): close one first`);
    }
    for (const t of this.trials.values()) {
      if (t.port === req.port && !t.final) {
        throw new ProtocolError(req.id, `UDP port ${req.port} is already counted by trial ${t.id}${t.owner === c ? '' : ' of another client'}: close it first or pick another port`);
      }
    }
    const defaults = this.options.trial ?? {};
    // The slot is taken before the sink starts, so two clients opening at once cannot both pass the checks above.
    const t: Trial = { id: this.nextTrial++, port: req.port, owner: c, sink: null, timer: null, startedMs: 0, final: null };
    this.trials.set(t.id, t);
    c.trials.set(t.id, t);
    const sink = new Sink({
      ...defaults,
      port: req.port,
      expect: req.expect,
      midStream: req.midStream,
      timestamp: req.timestamp ?? defaults.timestamp,
    });
    try {
      await sink.start();
    } catch (e) {
      this.trials.delete(t.id);
      c.trials.delete(t.id);
      throw e;
    }
    t.sink = sink;
    t.startedMs = Date.now();
    this.trialsServed++;
    this.live.add(sink);
    void sink.done.then((report) => {
      // In one step: a scrape sees the trial either live or ended, never both nor neither.
      this.live.delete(sink);
      const tt = report.totals;
      this.ended.datagrams += tt.datagrams;
      this.ended.bytes += tt.bytes;
      this.ended.ownDrops += report.loss.own;
      this.ended.refused['non-pktgen'] += tt.nonPktgen;
      for (const [k, n] of Object.entries(tt.refused)) this.ended.refused[k] = (this.ended.refused[k] ?? 0) + n;
      for (const f of report.flows) if (this.sources.size < MAX_SOURCES_SEEN) this.sources.add(f.srcIp);
      t.final = report;
      if (t.timer) clearTimeout(t.timer);
      t.timer = null;
      this.emit({ event: 'trial-closed', trial: t.id, client: c.who, port: t.port, reason: report.reason, report });
    });
    if (c.closed || this.stopping) {
      // The client left (or the server is stopping) while the sink started.
      await this.endTrial(t, c.closed ? 'client-gone' : 'server-stopped');
      return;
    }
    t.timer = setTimeout(() => void sink.stop('max-trial-seconds'), this.limits.maxTrialSeconds * 1000);
    this.emit({
      event: 'trial-opened', trial: t.id, client: c.who, port: t.port, expect: req.expect ?? null, midStream: !!req.midStream,
      timestamp: req.timestamp ?? defaults.timestamp ?? 'kernel',
    });
    c.send(encodeReply(req.id, { trial: t.id, port: t.port }));
  }

  private status(t: Trial): TrialStatus {
    const sink = t.sink!;
    if (t.final) {
      const { received, unique, lost, duplicates, reordered, seqJumps, bytes } = t.final.totals;
      return { trial: t.id, state: 'ended', reason: t.final.reason, seconds: t.final.seconds, received, unique, lost, duplicates, reordered, seqJumps, bytes };
    }
    // counts(), not report(): no histograms, no flow list; a client may poll this often.
    const r = sink.accounting.counts();
    return { trial: t.id, state: 'running', reason: 'running', seconds: (Date.now() - t.startedMs) / 1000, ...r };
  }

  /** Stops the trial (if still receiving) and forgets it; its report and histograms go to the client. */
  private async collect(t: Trial): Promise<{ report: SinkReport; histograms: HistogramsDoc }> {
    const report = await t.sink!.stop('closed');
    const histograms = t.sink!.histograms();
    this.forget(t);
    return { report, histograms };
  }

  private async endTrial(t: Trial, end: TrialEnd): Promise<void> {
    this.forget(t);
    if (t.sink) await t.sink.stop(end);
  }

  private forget(t: Trial): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = null;
    this.trials.delete(t.id);
    t.owner.trials.delete(t.id);
  }

  /** Running totals over every trial since start(), for --metrics; cheap (no histograms, no flow reports). */
  totals(): ServeTotals {
    const r: ServeTotals = { ...this.ended, refused: { ...this.ended.refused }, hosts: 0 };
    const hosts = new Set(this.sources);
    for (const sink of this.live) {
      const a = sink.accounting;
      r.datagrams += a.datagrams;
      r.bytes += a.counts().bytes;
      r.refused['non-pktgen'] += a.nonPktgen;
      for (const [k, n] of Object.entries(a.refused)) r.refused[k] = (r.refused[k] ?? 0) + n;
      if (!sink.options.capture) r.ownDrops += udpSocketDrops(sink.options.port) ?? 0;
      for (const f of a.flows) if (hosts.size < MAX_SOURCES_SEEN) hosts.add(f.srcHost); // IPv6 too: the address, not its flow id
    }
    r.hosts = hosts.size;
    return r;
  }

  /** Stops listening, closes every connection and stops every trial. Resolves once all have stopped. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      const closed = new Promise<void>((res) => this.server.close(() => res()));
      await Promise.all([...this.conns].map((c) => {
        c.send(encodeError(null, 'server stopping: trials closed'));
        return c.gone('server-stopped', 'server stopping');
      }));
      await Promise.all([...this.trials.values()].map((t) => this.endTrial(t, 'server-stopped')));
      await closed;
    })();
    return this.stopping;
  }
}
