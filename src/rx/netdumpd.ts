import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { RuntimeError, UsageError } from '../errors.js';
import {
  DEBUGNET_RETRIES, DEBUGNET_ROUND_MS, NETDUMP_ACKPORT, NETDUMP_DATASIZE, NETDUMP_EKCD_KEY, NETDUMP_EKCD_KEY_MAX,
  NETDUMP_FINISHED, NETDUMP_HDR_LEN, NETDUMP_HERALD, NETDUMP_KDH, NETDUMP_PORT, NETDUMP_TYPE_NAMES, NETDUMP_VMCORE,
  KDH_LEN, encodeAck, formatKdhInfo, heraldPath, parseKdh, readNetdumpHeader, type NetdumpHeader,
  type ParsedNetdumpHeader,
} from '../proto/netdump.js';
import { HookRunner, formatHookEvent, type HookEvent } from './hook.js';
import { udpDropsIn } from './sink.js';

/**
 * A netdumpd-compatible server (FreeBSD's netdumpd.c + cap_herald.c), on ordinary UDP sockets.
 *
 * - Heralds arrive on --port (20023). Each new client gets its own socket on a fresh port, connect()ed to
 *   client:20024; every ACK for that session goes out from it, which is how the client learns where to send.
 * - Every valid message is ACKed with its seqno; anything whose length − 24 != mh_len, or bigger than the real
 *   server's 24 + 4096 buffer, is dropped silently: the client's retransmit is the error path.
 * - VMCORE data is written at mh_offset (buffered while contiguous, as netdumpd does), KDH decoded into the info file.
 * - Files: <dir>/[<herald path>/]vmcore.<host>.<n> and info.<host>.<n>, plus *.<host>.last symlinks on completion.
 *   host = the client's address. Herald paths are reduced to plain components under --dir: no '..', no absolute
 *   paths, no following symlinks out of it.
 * - Unlike netdumpd, a dump is received as vmcore.<host>.<n>.incomplete and renamed to vmcore.<host>.<n> only once
 *   FINISHED came and everything is written and fsync'ed: a dump cut short by a timeout, a write error, a stop or a
 *   killed server never looks complete. The info file always ends with one status line: "Dump started" while it
 *   runs (and forever, if the server is killed), then netdumpd's "Dump complete", "Dump incomplete: <why>" or
 *   "Dump unsuccessful: <why>".
 * - A session is (client address, herald source port, herald path), not the address alone as in netdumpd. There, a
 *   herald spoofed from the client's address naming another path, with no data after it, made the client's real
 *   herald look like a retransmit: ACKed from the spoofed session's socket, its dump landed in the attacker's
 *   directory. Here a herald with another port or path is a new session *beside* the open one: refusing it while one
 *   is open would let one spoofed herald lock the real client out for --timeout (a panicked kernel tries for ~12 s),
 *   and replacing the open one would let it end a dump in progress. At most MAX_SESSIONS_PER_ADDR per address.
 *   Only a herald identical in all three is a retransmit (no data yet) or a new dump (netdumpd's rule), the latter
 *   only once the old dump has stopped receiving (else one spoofed herald ended any dump in progress).
 * - Budgets (a herald is one spoofable datagram; netdumpd kept each for 600 s with a socket, two files and a
 *   128 KiB buffer, so ~6,650 heralds spoofed across a /17 used up 20,000 fds and every real dump failed):
 *   a session that has had no data yet ("half-open": the herald's ACK goes to the spoofed address, a real client
 *   sends data right after it) costs a socket and two fds and ends --herald-timeout after its last message, or at
 *   once when its ACK comes back unreachable; having received nothing it leaves no files (nor the directories its
 *   herald path created). At most --max-sessions sessions: over it the oldest half-open one gives way (if its
 *   herald is at least GIVE_WAY_AFTER_MS old), else the herald gets no ACK. The buffer and the seqno window come
 *   with the first data. Everything refused or ended early is counted in `drops` by reason, logged the first time,
 *   and reported every --stats-interval.
 */

export interface NetdumpServerOptions {
  dir: string;
  /** Address to listen on; also the source address of the per-client sockets. Default: all. */
  bind?: string;
  port?: number;
  /** Seconds without a message before a session is closed as "Dump incomplete: client timed out". netdumpd: 600. */
  timeoutSec?: number;
  /** One line per event (stdout in the CLI). */
  log?: (line: string) => void;
  /**
   * Largest dump accepted, in bytes: VMCORE/EKCD_KEY data whose offset + len lies beyond it is refused (no ACK).
   * Default DEFAULT_MAX_DUMP_SIZE; at most MAX_DUMP_SIZE_LIMIT.
   */
  maxDumpSize?: number;
  /**
   * Seconds a session that has had no data yet may wait after its last message (the herald) before it ends and its
   * files are removed. Default DEFAULT_HERALD_TIMEOUT_SEC; never longer than timeoutSec.
   */
  heraldTimeoutSec?: number;
  /** Open sessions at most, server-wide (see the class comment). Default DEFAULT_MAX_SESSIONS. */
  maxSessions?: number;
  /** Seconds between 'drops' reports (one only when a counter changed since the last); 0: none. Default 60. */
  statsIntervalSec?: number;
  /**
   * A program run after each dump that had data, complete or not, with netdumpd's `-i script` arguments: reason
   * (success, timeout or error; a stop is a timeout, as netdumpd's shutdown calls it), client address, hostname,
   * info file, vmcore file (netdumpd.c exec_handler). RAWPOLL_DUMP_STATUS has our status (complete, timeout, error,
   * stopped). Each ends in a 'hook' event and a log line. Checked by checkHookProgram.
   */
  hook?: string;
  /** The hook's time limit, ms (HOOK_DEFAULTS). */
  hookTimeoutMs?: number;
}

/** netdumpd's reason word for a dump's status (exec_handler's first argument). */
export const HOOK_REASON: Readonly<Record<DumpResult['status'], string>> = {
  complete: 'success', timeout: 'timeout', stopped: 'timeout', error: 'error',
};
/** Client addresses remembered for the hosts-seen count (a client is one that sent data, not just a herald). */
const MAX_HOSTS_SEEN = 65536;

/**
 * A FreeBSD client sends its first data (EKCD key or VMCORE) as soon as the herald's ACK is in, and resends what is
 * not ACKed every round of ~1 s for 1 + 11 rounds (debugnet_send: npolls 2000 × 500 µs, nretries 10), then gives
 * up the dump: 12 s. A session with nothing 15 s after its last herald has no client left (or never had one); a
 * client whose herald's ACK was lost heralds again, which starts the 15 s again.
 */
export const DEFAULT_HERALD_TIMEOUT_SEC = Math.ceil(((1 + DEBUGNET_RETRIES) * DEBUGNET_ROUND_MS) / 1000) + 3;
/** 128 sessions: ≤ 512 fds (socket, info, vmcore, key) and ≤ 17 MiB of buffers (128 KiB + 8 KiB window each). */
export const DEFAULT_MAX_SESSIONS = 128;
export const MAX_SESSIONS_LIMIT = 10_000;
/**
 * Seqnos a session remembers behind the highest it has seen (a bitmap, 8 KiB). A retransmit is at most as far
 * behind the newest datagram as the client keeps in flight: 64 for the kernel, up to 65536 for rawpoll --window.
 */
export const SEQNO_WINDOW = 65536;

/**
 * What was refused or ended early, by reason. Datagrams: runt … keyBeyondLimit. Heralds refused without an ACK:
 * sessionLimit, maxSessions, heraldDuringDump. Sessions ended without any data (their files removed): heraldNoData,
 * heraldDisplaced, heraldUnreachable.
 */
export interface NetdumpDrops {
  /** Shorter than the 24-byte header. */
  runt: number;
  /** Length − 24 != mh_len (netdumpd's rule). */
  length: number;
  /** Longer than netdumpd's buffer (a herald: 24 + MAXPATHLEN; else 24 + 4096). */
  oversize: number;
  /** Not a HERALD on the herald port. */
  notHerald: number;
  /** Unknown message type on a session port. */
  unknownType: number;
  /** VMCORE/EKCD_KEY data ending beyond --max-dump-size (no ACK). */
  beyondMaxDumpSize: number;
  /** EKCD_KEY data ending beyond NETDUMP_EKCD_KEY_MAX (no ACK): the key file stays small. */
  keyBeyondLimit: number;
  /** Heralds refused: MAX_SESSIONS_PER_ADDR sessions from that address, all with data or heralded < 50 ms ago. */
  sessionLimit: number;
  /** Heralds refused: --max-sessions sessions open, all with data or heralded less than 50 ms ago. */
  maxSessions: number;
  /** Heralds refused: they name a session (address, port, path) still receiving data (no ACK; see onHerald). */
  heraldDuringDump: number;
  /** Sessions ended with no data --herald-timeout after their last message. */
  heraldNoData: number;
  /** Sessions without data that gave way to a newer herald (--max-sessions or the per-address limit). */
  heraldDisplaced: number;
  /** Sessions without data whose ACK came back unreachable (ICMP port/host unreachable, no route). */
  heraldUnreachable: number;
}

/** `name N` for each reason with a count, in NetdumpDrops order; '' if none. */
export function formatNetdumpDrops(d: NetdumpDrops): string {
  return Object.entries(d).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
}

/** Errors a connected UDP socket reports for an ACK that cannot reach the client. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);

/**
 * Which of the last `size` seqnos behind the highest seen have been seen: a ring of bits, in u32 arithmetic, so it
 * is wrap-safe and its memory fixed (a Set of every ACKed seqno held ~16M entries for a 64 GiB dump). A seqno more
 * than `size` behind the highest, or more than 2^31 ahead, counts as seen: it only feeds the duplicate count.
 */
export class SeqnoWindow {
  private readonly bits: Uint32Array;
  private high = 0;
  private started = false;
  constructor(readonly size = SEQNO_WINDOW) {
    if (!(Number.isInteger(Math.log2(size)) && size >= 32)) {
      throw new RangeError(`SeqnoWindow size ${size}: expected a power of 2, at least 32`);
    }
    this.bits = new Uint32Array(size / 32);
  }

  /** Bytes the window holds (fixed). */
  get byteLength(): number {
    return this.bits.byteLength;
  }

  /** Records `seqno`; true if it is new, false for a repeat or one too old to tell. */
  add(seqno: number): boolean {
    const s = seqno >>> 0;
    if (!this.started) {
      this.started = true;
      this.high = s;
      this.flip(s);
      return true;
    }
    const ahead = (s - this.high) >>> 0;
    if (ahead === 0) return false;
    if (ahead < 0x80000000) {
      // Seqnos high+1 .. s enter the window: their bits (left by seqnos `size` older) are cleared first.
      this.clear((this.high + 1) >>> 0, ahead);
      this.high = s;
      this.flip(s);
      return true;
    }
    if (((this.high - s) >>> 0) >= this.size) return false;
    if (this.has(s)) return false;
    this.flip(s);
    return true;
  }

  private has(s: number): boolean {
    const i = s & (this.size - 1);
    return (this.bits[i >>> 5] & (1 << (i & 31))) !== 0;
  }

  private flip(s: number): void {
    const i = s & (this.size - 1);
    this.bits[i >>> 5] |= 1 << (i & 31);
  }

  /** Clears the bits of n seqnos from `from` on, a word at a time. */
  private clear(from: number, n: number): void {
    if (n >= this.size) { this.bits.fill(0); return; }
    let i = from & (this.size - 1);
    while (n > 0) {
      const bit = i & 31;
      const take = Math.min(32 - bit, n);
      const mask = take === 32 ? 0xffffffff : ((1 << take) - 1) << bit;
      this.bits[i >>> 5] &= ~mask;
      n -= take;
      i = (i + take) & (this.size - 1);
    }
  }
}

/** 64 GiB: more than the RAM of the machines that dump over the network (a dump is at most the size of RAM). */
export const DEFAULT_MAX_DUMP_SIZE = 64 * 1024 ** 3;
/** 4 PiB: far below 2^53, so offset + len of any accepted message is an exact Number (file positions in node are). */
export const MAX_DUMP_SIZE_LIMIT = 2 ** 52;

export interface DumpResult {
  client: string;
  host: string;
  index: number;
  vmcore: string;
  info: string;
  /** stopped: the server was closed (SIGINT/SIGTERM) while the dump was still coming. */
  status: 'complete' | 'timeout' | 'error' | 'stopped';
  /** Why an 'error' dump failed: one line naming the file and the reason (e.g. ENOSPC). */
  error?: string;
  /** VMCORE payload bytes of messages with a new seqno (see SeqnoWindow). */
  bytes: number;
  messages: number;
  /** VMCORE messages whose seqno was seen before or lies more than SEQNO_WINDOW behind the newest (written again). */
  duplicates: number;
  /** Datagrams refused because their data lay beyond --max-dump-size. */
  beyondMaxDumpSize: number;
  kdh: ReturnType<typeof parseKdh>;
}

const VMCORE_BUFSZ = 128 * 1024;
/** Open sessions per client address (a real client has one; see onHerald). */
const MAX_SESSIONS_PER_ADDR = 4;
/**
 * A session without data gives way to a newer herald only this long after its (last) herald: time for its ACK to
 * reach the client and the client's first data to come back and be read. A FreeBSD client answers at once (it polls
 * its NIC every 500 µs); 50 ms covers a routed path and a server busy with a batch of heralds. Under a flood of
 * heralds faster than --max-sessions per 50 ms, the rest are refused (no ACK: the client retries every ~1 s).
 */
const GIVE_WAY_AFTER_MS = 50;
/** A herald naming a session with data starts a new dump only after the old one was silent this long (or --timeout). */
const RESTART_SILENCE_MS = 10_000;
/** cap_herald.c reads a herald into hdr + MAXPATHLEN: a longer one is truncated and fails the length check. */
const HERALD_MAX = NETDUMP_HDR_LEN + 1024;
const PKT_MAX = NETDUMP_HDR_LEN + NETDUMP_DATASIZE;
/** How long a completed session's socket stays to re-ACK FINISHED: the client gives up after 12 × ~1 s. */
const LINGER_MS = 15_000;
/** Suffix of a vmcore still being received (or cut short): removed by the rename that marks it complete. */
export const INCOMPLETE_SUFFIX = '.incomplete';
/**
 * Status while the dump runs. The info file is rewritten in place, never shorter than before (no truncate, so no
 * moment without a status line): this is the shortest status, and netdumpd's "Dump complete" is only one byte longer.
 */
const STATUS_STARTED = 'Dump started';

/** Keep a name to [A-Za-z0-9._-] and never "." or "..": safe as a file name component. */
export function sanitizeComponent(s: string): string {
  const t = s.replace(/[^A-Za-z0-9._-]/g, '_');
  return t === '' || t === '.' || t === '..' ? '_' : t;
}

/** A herald path as a list of safe relative components: '..', '.', empty and absolute prefixes are dropped. */
export function sanitizeHeraldPath(p: string | null): string[] {
  if (!p) return [];
  return p.split(/[\\/]+/).filter((c) => c !== '' && c !== '.' && c !== '..').map(sanitizeComponent).slice(0, 16);
}

class Session {
  sock: dgram.Socket;
  port = 0;
  /** The socket is still being bound and connected: closing it is left to newSession. */
  binding = true;
  lastMsg = Date.now();
  /** Any message ACKed on the session port (EKCD key, VMCORE, KDH, FINISHED): until then the session is half-open. */
  anyData = false;
  infoFd = -1;
  coreFd = -1;
  keyFd = -1;
  index = -1;
  dirAbs = '';
  vmcoreName = '';
  infoName = '';
  /** The info file but its status line: the "Dump from" line, then the KDH as decoded. */
  infoText = '';
  /** Why the dump failed (status 'error'). */
  error = '';
  infoFailed = false;
  status = STATUS_STARTED;
  /** VMCORE buffer and seqno window: allocated with the first VMCORE, so a half-open session holds neither. */
  buf: Buffer | null = null;
  seen: SeqnoWindow | null = null;
  bufOff = 0;
  bufStart = 0;
  bytes = 0;
  maxEnd = 0;
  messages = 0;
  duplicates = 0;
  /** Messages refused for data beyond --max-dump-size (logged once). */
  beyondMax = 0;
  kdh: ReturnType<typeof parseKdh> = null;
  closed = false;
  complete = false;
  constructor(readonly key: string, readonly ip: string, readonly srcPort: number, readonly host: string) {
    this.sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  }
}

function emptyDrops(): NetdumpDrops {
  return {
    runt: 0, length: 0, oversize: 0, notHerald: 0, unknownType: 0, beyondMaxDumpSize: 0, keyBeyondLimit: 0,
    sessionLimit: 0, maxSessions: 0, heraldDuringDump: 0, heraldNoData: 0, heraldDisplaced: 0, heraldUnreachable: 0,
  };
}

export class NetdumpServer extends EventEmitter {
  private sock!: dgram.Socket;
  private readonly sessions = new Map<string, Session>();
  /** The sessions without data, oldest (by last herald) first: the first gives way when a limit is reached. */
  private readonly halfOpen = new Map<string, Session>();
  /** Open sessions per client address. */
  private readonly perAddr = new Map<string, number>();
  /** Session sockets of finished dumps, kept a little longer (see finish). */
  private readonly lingering = new Set<dgram.Socket>();
  /** Heralds read in this turn of the event loop, handled after it (see queueHerald). */
  private heralds: [Buffer, dgram.RemoteInfo][] = [];
  private stopped = false;
  /**
   * Directories herald paths made (and not removed since): a session that ends without data removes the empty ones
   * above its files, also those another session made (a flood of 'evil/<n>' must not leave 'evil' behind).
   */
  private readonly madeDirs = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private statsTimer: NodeJS.Timeout | null = null;
  private lastReported = '';
  private readonly log: (line: string) => void;
  private rootReal = '';
  port = 0;
  readonly timeoutMs: number;
  /** --herald-timeout, at most --timeout. */
  readonly heraldTimeoutMs: number;
  readonly maxSessions: number;
  readonly statsIntervalMs: number;
  /** Counters for tests, the periodic report and --json: what was dropped and why (see NetdumpDrops). */
  readonly drops: NetdumpDrops = emptyDrops();
  readonly maxDumpSize: number;
  /** Running totals for --metrics: datagrams and bytes received (every port), file bytes written, dumps by status. */
  readonly stats = {
    datagrams: 0, bytes: 0, bytesWritten: 0,
    dumps: { complete: 0, timeout: 0, error: 0, stopped: 0 } as Record<DumpResult['status'], number>,
  };
  /** Addresses that sent dump data (bounded; see MAX_HOSTS_SEEN). */
  private readonly clients = new Set<string>();
  /** Kernel drops of session sockets already closed (read when their dump ended). */
  private closedSocketDrops = 0;
  readonly hook: HookRunner | null = null;

  private constructor(private readonly o: NetdumpServerOptions) {
    super();
    this.log = o.log ?? (() => {});
    this.timeoutMs = (o.timeoutSec ?? 600) * 1000;
    this.heraldTimeoutMs = Math.min(this.timeoutMs, (o.heraldTimeoutSec ?? DEFAULT_HERALD_TIMEOUT_SEC) * 1000);
    this.maxSessions = o.maxSessions ?? DEFAULT_MAX_SESSIONS;
    this.statsIntervalMs = (o.statsIntervalSec ?? 60) * 1000;
    this.maxDumpSize = o.maxDumpSize ?? DEFAULT_MAX_DUMP_SIZE;
    if (o.hook !== undefined) {
      this.hook = new HookRunner({
        prog: o.hook, timeoutMs: o.hookTimeoutMs,
        onEvent: (e: HookEvent) => { this.log(formatHookEvent(e)); this.emit('hook', e); },
      });
    }
  }

  static async start(o: NetdumpServerOptions): Promise<NetdumpServer> {
    const m = o.maxDumpSize;
    if (m !== undefined && !(Number.isInteger(m) && m >= 1 && m <= MAX_DUMP_SIZE_LIMIT)) {
      throw new UsageError(`bad --max-dump-size '${m}': expected an integer 1-${MAX_DUMP_SIZE_LIMIT} (bytes)`);
    }
    const n = o.maxSessions;
    if (n !== undefined && !(Number.isInteger(n) && n >= 1 && n <= MAX_SESSIONS_LIMIT)) {
      throw new UsageError(`bad --max-sessions '${n}': expected an integer 1-${MAX_SESSIONS_LIMIT}`);
    }
    const t = o.heraldTimeoutSec;
    if (t !== undefined && !(t > 0 && t <= 86400)) {
      throw new UsageError(`bad --herald-timeout '${t}': expected seconds, more than 0, at most 86400`);
    }
    const iv = o.statsIntervalSec;
    if (iv !== undefined && !(iv >= 0 && iv <= 86400)) {
      throw new UsageError(`bad --stats-interval '${iv}': expected seconds 0-86400 (0: none)`);
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(o.dir);
    } catch {
      throw new UsageError(`bad --dir '${o.dir}': no such directory (create it first)`);
    }
    if (!st.isDirectory()) throw new UsageError(`bad --dir '${o.dir}': not a directory`);
    const s = new NetdumpServer(o);
    s.rootReal = fs.realpathSync(o.dir);
    s.sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1024 * 1024 });
    s.sock.on('message', (msg, rinfo) => s.queueHerald(msg, rinfo));
    // A bind failure is the start-up error, said once by the caller; errors after it are logged.
    await new Promise<void>((resolve, reject) => {
      s.sock.once('error', (e: NodeJS.ErrnoException) => reject(new RuntimeError(
        `cannot listen on UDP ${o.bind ?? '0.0.0.0'}:${o.port ?? NETDUMP_PORT}: ${e.code ?? e.message}` +
        (e.code === 'EADDRINUSE' ? ' (another netdump server is running? choose --port)' : ''))));
      s.sock.bind({ address: o.bind ?? '0.0.0.0', port: o.port ?? NETDUMP_PORT }, () => {
        s.sock.removeAllListeners('error');
        s.sock.on('error', (e) => s.log(`server socket error: ${e.message}`));
        resolve();
      });
    });
    s.port = s.sock.address().port;
    // The shorter of the two timeouts sets the pace: a half-open session ends within 1.25 × --herald-timeout.
    const tick = Math.max(200, Math.min(10_000, Math.min(s.timeoutMs, s.heraldTimeoutMs) / 4));
    s.timer = setInterval(() => s.timeoutClients(), tick);
    s.timer.unref();
    if (s.statsIntervalMs > 0) {
      s.statsTimer = setInterval(() => s.reportDrops(), s.statsIntervalMs);
      s.statsTimer.unref();
    }
    s.log(`Waiting for clients on ${o.bind ?? '0.0.0.0'}:${s.port}, dumps into ${s.rootReal}`);
    return s;
  }

  /**
   * Stops: every open session with data ends as "Dump incomplete: server stopped" (netdumpd calls it a timeout,
   * which sends the admin looking at the client), its vmcore left under the .incomplete name; sessions without data
   * just end, leaving no files.
   */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.statsTimer) clearInterval(this.statsTimer);
    let idle = 0;
    for (const c of [...this.sessions.values()]) {
      if (c.anyData) this.finish(c, 'stopped');
      else { this.discard(c); idle++; }
    }
    if (idle) this.log(`${idle} session${idle === 1 ? '' : 's'} without data closed (files removed)`);
    for (const s of [...this.lingering]) this.closeSock(s);
    await new Promise<void>((r) => this.sock.close(() => r()));
    // The hooks of the dumps just ended (and any still running): each ends by its time limit at the latest.
    if (this.hook) await this.hook.close();
  }

  /** Client addresses that have sent dump data. */
  get hostsSeen(): number {
    return this.clients.size;
  }

  /**
   * Datagrams the kernel dropped for our sockets (their buffers were full): the herald port's and open sessions',
   * from /proc/self/net/udp, plus those of sessions already ended. null where /proc cannot be read.
   */
  socketDrops(): number | null {
    let table: string;
    try {
      table = fs.readFileSync('/proc/self/net/udp', 'utf8');
    } catch {
      return null;
    }
    let n = this.closedSocketDrops + (udpDropsIn(table, this.port) ?? 0);
    for (const c of this.sessions.values()) if (c.port) n += udpDropsIn(table, c.port) ?? 0;
    return n;
  }

  /** Open sessions (for tests and status). */
  get active(): number {
    return this.sessions.size;
  }

  /** Open sessions that have had no data yet. */
  get halfOpenCount(): number {
    return this.halfOpen.size;
  }

  /**
   * Emits 'drops' (a copy of the counters) and logs "Drops since start: …" if any counter changed since the last
   * report (or, with `force`, if any is non-zero). The CLI calls it with force at stop; the timer without.
   */
  reportDrops(force = false): boolean {
    const now = JSON.stringify(this.drops);
    const text = formatNetdumpDrops(this.drops);
    if (text === '' || (!force && now === this.lastReported)) return false;
    this.lastReported = now;
    this.log(`Drops since start: ${text}`);
    this.emit('drops', { ...this.drops });
    return true;
  }

  /** Counts one drop; the first of each reason is logged (then only counted, and reported every --stats-interval). */
  private count(reason: keyof NetdumpDrops, line?: () => string): void {
    if (++this.drops[reason] === 1 && line) this.log(`${line()} (further ones only counted as ${reason})`);
  }

  private closeSock(s: dgram.Socket): void {
    if (!this.lingering.delete(s)) return;
    try { s.close(); } catch { /* already closed */ }
  }

  /**
   * Heralds are handled in the check phase, after every socket that was readable in this turn has been read: a
   * session whose client answered its ACK while we were busy (a batch of flood heralds, the process descheduled)
   * then has its data counted before a herald can make it give way as "no data yet".
   */
  private queueHerald(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.datagrams++;
    this.stats.bytes += msg.length;
    if (this.heralds.push([msg, rinfo]) > 1) return;
    setImmediate(() => {
      const batch = this.heralds;
      this.heralds = [];
      if (!this.stopped) for (const [m, r] of batch) this.onHerald(m, r);
    });
  }

  private onHerald(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < NETDUMP_HDR_LEN) { this.count('runt'); return; }
    const h = readNetdumpHeader(msg)!;
    if (msg.length > HERALD_MAX) { this.count('oversize'); return; }
    if (h.type !== NETDUMP_HERALD) {
      const type = NETDUMP_TYPE_NAMES[h.type] ?? `type ${h.type}`;
      this.count('notHerald', () => `Ignoring ${type} from ${rinfo.address} on the herald port`);
      return;
    }
    if (msg.length - NETDUMP_HDR_LEN !== h.len) { this.count('length'); return; }
    const pathArg = heraldPath(msg.subarray(NETDUMP_HDR_LEN));
    // A session is (address, source port, herald path); see the class comment for why not the address alone.
    const ip = rinfo.address;
    const key = `${ip}:${rinfo.port}:${pathArg ?? ''}`;
    const existing = this.sessions.get(key);
    if (existing) {
      if (!existing.anyData) {
        // A retransmitted herald (our first ACK was lost): same session, ACK again from its socket; the client is
        // there, so its --herald-timeout starts again and it is the youngest to give way.
        existing.lastMsg = Date.now();
        this.halfOpen.delete(key);
        this.halfOpen.set(key, existing);
        this.sendAck(existing, h.seqno);
        return;
      }
      // netdumpd: the same client heralding again after data is a new dump (it rebooted and panicked again). Not
      // while the dump is still receiving: that herald is a retransmit that waited in our socket buffer behind a
      // flood (the client has long had our ACK and sent data), or one spoofed to end the dump. A client that really
      // starts over has stopped sending: its herald retries (~12 s) outlast RESTART_SILENCE_MS.
      if (existing.lastMsg + Math.min(RESTART_SILENCE_MS, this.timeoutMs) > Date.now()) {
        this.count('heraldDuringDump', () => `Ignoring herald from ${ip}:${rinfo.port}: its dump is receiving data ` +
          `(a late retransmit, or spoofed)`);
        return;
      }
      this.finish(existing, 'timeout');
    }
    // Over a limit, the oldest session without data gives way; sessions with data never do, nor one whose ACK left
    // less than GIVE_WAY_AFTER_MS ago: its client has not had the time to answer, and a client that got the ACK
    // never heralds again, so ending it would lose the dump, while a refused herald is only retried.
    const from = `${ip}:${rinfo.port}`;
    const now = Date.now();
    const victims: [Session, string][] = [];
    if ((this.perAddr.get(ip) ?? 0) >= MAX_SESSIONS_PER_ADDR) {
      const idle = this.oldestHalfOpen(now, ip);
      if (!idle) {
        this.count('sessionLimit', () => `Ignoring herald from ${from}: ${MAX_SESSIONS_PER_ADDR} dumps from ${ip} in progress`);
        return;
      }
      victims.push([idle, `${MAX_SESSIONS_PER_ADDR} sessions from ${ip}`]);
    }
    if (this.sessions.size - victims.length >= this.maxSessions) {
      const idle = this.oldestHalfOpen(now);
      if (!idle) {
        this.count('maxSessions', () => `Ignoring herald from ${from}: --max-sessions ${this.maxSessions} dumps in progress, ` +
          `all receiving data or heralded within the last ${GIVE_WAY_AFTER_MS} ms`);
        return;
      }
      victims.push([idle, `--max-sessions ${this.maxSessions} reached`]);
    }
    for (const [c, why] of victims) this.giveWay(c, why);
    void this.newSession(key, ip, rinfo.port, pathArg, h.seqno);
  }

  /** The half-open session with the oldest last herald (from `ip` only, if given), if that was long enough ago. */
  private oldestHalfOpen(now: number, ip?: string): Session | null {
    for (const c of this.halfOpen.values()) {
      if (ip !== undefined && c.ip !== ip) continue;
      return c.lastMsg + GIVE_WAY_AFTER_MS <= now ? c : null; // the rest are younger still
    }
    return null;
  }

  private giveWay(c: Session, why: string): void {
    this.count('heraldDisplaced', () => `Session from ${c.ip}:${c.srcPort} had no data yet and gave way to a newer ` +
      `herald (${why}); closed, its files removed`);
    this.discard(c);
  }

  /** Ends a session without data: closes it and removes its files and the directories its herald path created. */
  private discard(c: Session): void {
    if (c.closed) return;
    c.closed = true;
    this.forget(c);
    for (const fd of [c.infoFd, c.coreFd, c.keyFd]) if (fd >= 0) try { fs.closeSync(fd); } catch { /* ignore */ }
    c.infoFd = c.coreFd = c.keyFd = -1;
    for (const name of [c.infoName, c.vmcoreName]) {
      if (name) try { fs.unlinkSync(path.join(c.dirAbs, name)); } catch { /* already gone */ }
    }
    this.pruneDirs(c.dirAbs);
    c.buf = null;
    c.seen = null;
    // Nothing to linger for: no FINISHED to re-ACK. A socket still being bound is closed by newSession.
    if (!c.binding) try { c.sock.close(); } catch { /* already closed */ }
  }

  /** Takes a closed session out of the tables. */
  private forget(c: Session): void {
    if (this.sessions.get(c.key) !== c) return;
    this.sessions.delete(c.key);
    this.halfOpen.delete(c.key);
    const n = (this.perAddr.get(c.ip) ?? 1) - 1;
    if (n > 0) this.perAddr.set(c.ip, n);
    else this.perAddr.delete(c.ip);
  }

  private async newSession(key: string, ip: string, srcPort: number, herald: string | null, seqno: number): Promise<void> {
    const c = new Session(key, ip, srcPort, sanitizeComponent(ip));
    try {
      this.openFiles(c, sanitizeHeraldPath(herald));
    } catch (e) {
      // No ACK: the client retries its herald, then gives up saying the server never answered.
      this.log(`Can't create output files for new client ${ip}: ${(e as Error).message}`);
      this.emit('failure', { client: ip, error: `can't create output files: ${(e as Error).message}` });
      c.sock.close();
      return;
    }
    this.sessions.set(key, c);
    this.halfOpen.set(key, c);
    this.perAddr.set(ip, (this.perAddr.get(ip) ?? 0) + 1);
    c.sock.on('message', (m) => this.onClientMessage(c, m));
    c.sock.on('error', (e: NodeJS.ErrnoException) => {
      if (c.binding || c.closed) return;
      // An ICMP error for our ACK (netdumpd ends any session on one): a session without data has nobody to talk to.
      if (!c.anyData && UNREACHABLE.has(e.code ?? '')) this.unreachable(c, e.code!);
      else this.log(`client ${ip} socket error: ${e.message}`);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        c.sock.once('error', reject);
        c.sock.bind({ address: this.o.bind ?? '0.0.0.0', port: 0 }, () => {
          c.sock.connect(NETDUMP_ACKPORT, ip, () => { c.sock.removeListener('error', reject); resolve(); });
        });
      });
    } catch (e) {
      c.binding = false;
      if (c.closed) { try { c.sock.close(); } catch { /* closed */ } return; }
      this.log(`Can't open a session socket for new client ${ip}: ${(e as Error).message}`);
      this.emit('failure', { client: ip, error: `cannot open session socket: ${(e as Error).message}` });
      this.discard(c);
      return;
    }
    c.binding = false;
    if (c.closed) { try { c.sock.close(); } catch { /* closed */ } return; } // gave way while being bound
    c.port = c.sock.address().port;
    this.sendAck(c, seqno);
  }

  private unreachable(c: Session, code: string): void {
    this.count('heraldUnreachable', () => `Session from ${c.ip}:${c.srcPort} had no data yet and its ACK came back ` +
      `${code}; closed, its files removed`);
    this.discard(c);
  }

  /**
   * The directory of a herald path: each component made (0700) or, if it exists, used only if it is a directory or
   * a symlink to one inside --dir (mkdir -p followed a symlink out of --dir and made directories there); else --dir
   * itself, and what was made for the path is removed again.
   */
  private heraldDir(c: Session, comps: string[]): string {
    const inside = (p: string) => p === this.rootReal || p.startsWith(this.rootReal + path.sep);
    const want = `path '${comps.join('/')}'`;
    let dir = this.rootReal;
    const fallBack = (why: string) => {
      this.log(`client ${c.ip}: ${why}, using the default`);
      this.pruneDirs(dir);
      return this.rootReal;
    };
    for (const comp of comps) {
      const p = path.join(dir, comp);
      try {
        fs.mkdirSync(p, { mode: 0o700 });
        this.madeDirs.add(p);
        dir = p;
        continue;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return fallBack(`can't use ${want} (${(e as Error).message})`);
      }
      try {
        const real = fs.realpathSync(p);
        if (!inside(real)) return fallBack(`${want} leaves --dir`);
        if (!fs.statSync(real).isDirectory()) return fallBack(`can't use ${want} ('${comp}' is not a directory)`);
        dir = real;
      } catch (e) {
        return fallBack(`can't use ${want} (${(e as Error).message})`);
      }
    }
    return dir;
  }

  private openFiles(c: Session, comps: string[]): void {
    const dir = this.heraldDir(c, comps);
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
    try {
      // The lowest index no file of this host uses: one readdir, no ceiling. The info file reserves it (O_EXCL, as
      // netdumpd); a vmcore or key whose info was deleted keeps its index too.
      const used = usedIndexes(dir, c.host);
      for (let n = 0; ; n++) {
        if (used.has(n)) continue;
        const info = `info.${c.host}.${n}`;
        try {
          c.infoFd = fs.openSync(path.join(dir, info), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue; // made since the readdir
          throw new Error(`${path.join(dir, info)}: ${(e as Error).message}`);
        }
        c.index = n;
        c.infoName = info;
        break;
      }
    } catch (e) {
      this.pruneDirs(dir);
      throw e;
    }
    c.dirAbs = dir;
    c.vmcoreName = `vmcore.${c.host}.${c.index}${INCOMPLETE_SUFFIX}`;
    c.infoText = `Dump from ${c.host} [${c.ip}]\n`;
    try {
      c.coreFd = fs.openSync(path.join(dir, c.vmcoreName), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      this.renderInfo(c, STATUS_STARTED);
    } catch (e) {
      // Nothing received yet: leave no empty files (nor an info file without a status line) behind.
      const failed = c.coreFd < 0 ? c.vmcoreName : c.infoName;
      for (const fd of [c.infoFd, c.coreFd]) if (fd >= 0) try { fs.closeSync(fd); } catch { /* ignore */ }
      c.infoFd = c.coreFd = -1;
      fs.rmSync(path.join(dir, c.infoName), { force: true });
      if (failed !== c.vmcoreName) fs.rmSync(path.join(dir, c.vmcoreName), { force: true });
      this.pruneDirs(dir);
      throw new Error(`${path.join(dir, failed)}: ${(e as Error).message}`);
    }
  }

  /** Removes `dir` and its parents below --dir while they are empty and were made by a herald path. */
  private pruneDirs(dir: string): void {
    while (dir !== this.rootReal && this.madeDirs.has(dir)) {
      try {
        fs.rmdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return; // not empty: another session's (or a dump's)
      }
      this.madeDirs.delete(dir);
      dir = path.dirname(dir);
    }
  }

  /** Writes the whole info file, ending with `status`. It only ever grows (see STATUS_STARTED): plain pwrite. */
  private renderInfo(c: Session, status: string): void {
    const b = Buffer.from(`${c.infoText}${status}\n`);
    let off = 0;
    while (off < b.length) off += fs.writeSync(c.infoFd, b, off, b.length - off, off);
  }

  /** Adds a line to the info file (above the status line) or sets its status; a failure is said once per dump. */
  private writeInfo(c: Session, o: { add?: string; status?: string }): void {
    if (o.add) c.infoText += o.add;
    if (o.status) c.status = o.status;
    if (c.infoFd < 0) return;
    try {
      this.renderInfo(c, c.status);
    } catch (e) {
      if (c.infoFailed) return;
      c.infoFailed = true;
      const file = path.join(c.dirAbs, c.infoName);
      this.log(`client ${c.ip}: cannot write ${file}: ${(e as Error).message}`);
      this.emit('failure', { client: c.ip, file, error: (e as Error).message });
    }
  }

  private sendAck(c: Session, seqno: number): void {
    if (c.closed || c.port === 0) return; // socket not connected yet: the client will retransmit
    c.sock.send(encodeAck(seqno), (e: NodeJS.ErrnoException | null) => {
      // Like netdumpd: a lost ACK is harmless, the client retransmits. One that cannot leave at all (no route)
      // ends a session without data, like an ICMP error.
      if (!e || c.closed) return;
      if (!c.anyData && UNREACHABLE.has(e.code ?? '')) this.unreachable(c, e.code!);
      else this.log(`client ${c.ip}: send ACK ${seqno}: ${e.message}`);
    });
  }

  /** The first message ACKed on the session port: the client is real, the session is no longer half-open. */
  private gotData(c: Session): void {
    if (c.anyData) return;
    c.anyData = true;
    this.halfOpen.delete(c.key);
    if (this.clients.size < MAX_HOSTS_SEEN) this.clients.add(c.ip);
    this.log(`New dump from client ${c.ip} (to ${path.join(c.dirAbs, c.vmcoreName)}), session port ${c.port}`);
  }

  private onClientMessage(c: Session, msg: Buffer): void {
    this.stats.datagrams++;
    this.stats.bytes += msg.length;
    if (c.closed) {
      // Lingering after a complete dump: if our FINISHED ACK was lost, the client resends FINISHED; ACK it again
      // (netdumpd has closed the socket by then and the client ends with "failed to close the transaction").
      const h = msg.length === NETDUMP_HDR_LEN ? readNetdumpHeader(msg) : null;
      if (c.complete && h && h.type === NETDUMP_FINISHED && h.len === 0) {
        c.sock.send(encodeAck(h.seqno), () => {});
      }
      return;
    }
    if (msg.length < NETDUMP_HDR_LEN) { this.count('runt'); return; }
    if (msg.length > PKT_MAX) { this.count('oversize'); return; }
    const h = readNetdumpHeader(msg)!;
    if (msg.length - NETDUMP_HDR_LEN !== h.len) { this.count('length'); return; }
    if (h.type === NETDUMP_EKCD_KEY && !this.keyInRange(c, h)) return;
    if ((h.type === NETDUMP_VMCORE || h.type === NETDUMP_EKCD_KEY) && !this.inRange(c, h)) return;
    c.lastMsg = Date.now();
    const payload = msg.subarray(NETDUMP_HDR_LEN);
    switch (h.type) {
      case NETDUMP_VMCORE: return this.onVmcore(c, h, payload);
      case NETDUMP_KDH: return this.onKdh(c, h, payload);
      case NETDUMP_EKCD_KEY: return this.onKey(c, h, payload);
      case NETDUMP_FINISHED: return this.onFinished(c, h);
      default:
        this.count('unknownType', () => `Received unexpected message type ${h.type} from ${c.ip}`);
    }
  }

  /**
   * Data must end within --max-dump-size, decided on the exact u64 offset: a write beyond it would be an EFBIG that
   * ends the session (2^44 on ext4), or, rounded above 2^53, land at position 0. Refused without an ACK (a spoofed
   * datagram must not end the real client's session; a real one is retransmitted and the session times out);
   * counted, and said once per session.
   */
  private inRange(c: Session, h: ParsedNetdumpHeader): boolean {
    const off = h.offset64;
    if (off + BigInt(h.len) <= BigInt(this.maxDumpSize)) return true;
    this.drops.beyondMaxDumpSize++;
    c.beyondMax++;
    if (c.beyondMax === 1) {
      this.log(`client ${c.ip}: refusing ${NETDUMP_TYPE_NAMES[h.type]} seqno ${h.seqno} at offset 0x${off.toString(16)} ` +
        `+ ${h.len}: beyond --max-dump-size ${this.maxDumpSize} (no ACK; later ones only counted)`);
    }
    return false;
  }

  /**
   * The key file is written at mh_offset too: without a bound of its own, a key at 2^50 made a sparse key file of
   * that apparent size (--max-dump-size bounds the vmcore). A client never sends key bytes beyond
   * NETDUMP_EKCD_KEY_MAX; refused without an ACK, counted.
   */
  private keyInRange(c: Session, h: ParsedNetdumpHeader): boolean {
    if (h.offset64 + BigInt(h.len) <= BigInt(NETDUMP_EKCD_KEY_MAX)) return true;
    this.count('keyBeyondLimit', () => `client ${c.ip}: refusing EKCD_KEY seqno ${h.seqno} at offset ` +
      `0x${h.offset64.toString(16)} + ${h.len}: a key ends within ${NETDUMP_EKCD_KEY_MAX} bytes (no ACK)`);
    return false;
  }

  private onVmcore(c: Session, h: NetdumpHeader, data: Buffer): void {
    this.gotData(c);
    c.buf ??= Buffer.alloc(VMCORE_BUFSZ);
    c.seen ??= new SeqnoWindow();
    c.messages++;
    if (c.seen.add(h.seqno)) c.bytes += data.length;
    else c.duplicates++;
    if (c.bufOff + data.length > VMCORE_BUFSZ || (c.bufOff > 0 && c.bufStart + c.bufOff !== h.offset)) {
      if (!this.flush(c)) return;
    }
    if (c.bufOff === 0) c.bufStart = h.offset;
    data.copy(c.buf, c.bufOff);
    c.bufOff += data.length;
    c.maxEnd = Math.max(c.maxEnd, h.offset + data.length);
    this.sendAck(c, h.seqno);
  }

  private flush(c: Session): boolean {
    if (c.bufOff === 0 || !c.buf) return true;
    try {
      let done = 0;
      while (done < c.bufOff) done += fs.writeSync(c.coreFd, c.buf, done, c.bufOff - done, c.bufStart + done);
      this.stats.bytesWritten += c.bufOff;
      c.bufOff = 0;
      return true;
    } catch (e) {
      // netdumpd's words; the path too, because the CLI prints this line as it is.
      c.error = `write error @ offset ${c.bufStart.toString(16).padStart(8, '0')} in ${path.join(c.dirAbs, c.vmcoreName)}: ${(e as Error).message}`;
      this.finish(c, 'error');
      return false;
    }
  }

  private onKdh(c: Session, h: NetdumpHeader, data: Buffer): void {
    this.gotData(c);
    this.sendAck(c, h.seqno);
    if (data.length < KDH_LEN) {
      this.writeInfo(c, { add: 'Bad KDH: packet too small\n' });
      return;
    }
    c.kdh = parseKdh(data);
    this.writeInfo(c, { add: formatKdhInfo(c.kdh!) });
  }

  private onKey(c: Session, h: NetdumpHeader, data: Buffer): void {
    try {
      if (c.keyFd < 0) {
        const { O_WRONLY, O_CREAT, O_NOFOLLOW } = fs.constants;
        c.keyFd = fs.openSync(path.join(c.dirAbs, `key.${c.host}.${c.index}`), O_WRONLY | O_CREAT | O_NOFOLLOW, 0o400);
      }
      fs.writeSync(c.keyFd, data, 0, data.length, h.offset);
      this.stats.bytesWritten += data.length;
    } catch (e) {
      this.log(`client ${c.ip}: key write: ${(e as Error).message}`);
      return;
    }
    this.gotData(c);
    this.sendAck(c, h.seqno);
  }

  private onFinished(c: Session, h: NetdumpHeader): void {
    this.gotData(c);
    if (!this.flush(c)) return;
    try { fs.fsyncSync(c.coreFd); } catch { /* not fatal, as in netdumpd */ }
    // Only now does the dump get its ordinary name (rename is atomic: the complete name never shows a partial dump).
    const final = `vmcore.${c.host}.${c.index}`;
    try {
      fs.renameSync(path.join(c.dirAbs, c.vmcoreName), path.join(c.dirAbs, final));
    } catch (e) {
      c.error = `cannot rename ${path.join(c.dirAbs, c.vmcoreName)} to ${final}: ${(e as Error).message}`;
      this.finish(c, 'error');
      return;
    }
    c.vmcoreName = final;
    for (const [kind, target] of [['vmcore', c.vmcoreName], ['info', c.infoName]]) {
      const link = path.join(c.dirAbs, `${kind}.${c.host}.last`);
      try { fs.unlinkSync(link); } catch { /* ENOENT */ }
      try { fs.symlinkSync(target, link); } catch (e) { this.log(`symlink ${link}: ${(e as Error).message}`); }
    }
    this.writeInfo(c, { status: 'Dump complete' });
    this.sendAck(c, h.seqno);
    const refused = c.beyondMax ? `, ${c.beyondMax} refused beyond --max-dump-size` : '';
    this.log(`Completed dump from client ${c.ip}: ${c.bytes} bytes in ${c.messages} messages (${c.duplicates} duplicates${refused})`);
    this.finish(c, 'complete');
  }

  private timeoutClients(): void {
    const now = Date.now();
    for (const c of [...this.sessions.values()]) {
      if (c.anyData) {
        if (c.lastMsg + this.timeoutMs < now) this.finish(c, 'timeout');
      } else if (c.lastMsg + this.heraldTimeoutMs < now) {
        this.count('heraldNoData', () => `Session from ${c.ip}:${c.srcPort} got no data within --herald-timeout ` +
          `${this.heraldTimeoutMs / 1000} s; closed, its files removed`);
        this.discard(c);
      }
    }
  }

  /** Ends a session that has had data (one without is discarded instead). */
  private finish(c: Session, status: DumpResult['status']): void {
    if (c.closed) return;
    if (status === 'timeout' || status === 'stopped') {
      this.flush(c); // may end the session itself as a write error
      if (c.closed) return;
      const why = status === 'timeout' ? 'client timed out' : 'server stopped';
      this.log(`Dump from client ${c.ip} incomplete: ${why} (kept as ${path.join(c.dirAbs, c.vmcoreName)})`);
      this.writeInfo(c, { status: `Dump incomplete: ${why}` });
    } else if (status === 'error') {
      this.log(`Dump from client ${c.ip} unsuccessful: ${c.error} (kept as ${path.join(c.dirAbs, c.vmcoreName)})`);
      this.writeInfo(c, { status: `Dump unsuccessful: ${c.error}` });
    }
    c.closed = true;
    this.forget(c);
    c.buf = null;
    c.seen = null;
    // A complete session keeps its socket a while to re-ACK a resent FINISHED; others just let the last ACK leave.
    c.complete = status === 'complete';
    const linger = c.complete ? Math.min(LINGER_MS, this.timeoutMs) : 200;
    this.lingering.add(c.sock);
    setTimeout(() => this.closeSock(c.sock), linger).unref();
    for (const fd of [c.infoFd, c.coreFd, c.keyFd]) if (fd >= 0) try { fs.closeSync(fd); } catch { /* ignore */ }
    c.infoFd = c.coreFd = c.keyFd = -1;
    const r: DumpResult = {
      client: c.ip, host: c.host, index: c.index, vmcore: path.join(c.dirAbs, c.vmcoreName),
      info: path.join(c.dirAbs, c.infoName), status, bytes: c.bytes, messages: c.messages, duplicates: c.duplicates,
      beyondMaxDumpSize: c.beyondMax, kdh: c.kdh,
    };
    if (status === 'error') r.error = c.error;
    this.stats.dumps[status]++;
    if (c.port) {
      try {
        this.closedSocketDrops += udpDropsIn(fs.readFileSync('/proc/self/net/udp', 'utf8'), c.port) ?? 0;
      } catch { /* no /proc: socketDrops() says null */ }
    }
    this.emit('dump', r);
    // netdumpd runs its script after every dump that had a client, whatever the end (exec_handler).
    this.hook?.run([HOOK_REASON[status], c.ip, c.host, r.info, r.vmcore], { RAWPOLL_DUMP_STATUS: status });
  }
}

/** Indexes files of `host` in `dir` use: info.<host>.<n>, vmcore.<host>.<n>[.incomplete], key.<host>.<n>. */
function usedIndexes(dir: string, host: string): Set<number> {
  const used = new Set<number>();
  const prefixes = ['info.', 'vmcore.', 'key.'].map((k) => `${k}${host}.`);
  for (const name of fs.readdirSync(dir)) {
    const p = prefixes.find((x) => name.startsWith(x));
    if (!p) continue;
    let rest = name.slice(p.length);
    if (rest.endsWith(INCOMPLETE_SUFFIX)) rest = rest.slice(0, -INCOMPLETE_SUFFIX.length);
    if (/^\d{1,15}$/.test(rest)) used.add(Number(rest));
  }
  return used;
}
