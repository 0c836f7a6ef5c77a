import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { RuntimeError, UsageError } from '../errors.js';
import {
  NETDUMP_ACKPORT, NETDUMP_DATASIZE, NETDUMP_EKCD_KEY, NETDUMP_FINISHED, NETDUMP_HDR_LEN, NETDUMP_HERALD, NETDUMP_KDH,
  NETDUMP_PORT, NETDUMP_TYPE_NAMES, NETDUMP_VMCORE, KDH_LEN, encodeAck, formatKdhInfo, heraldPath, parseKdh,
  readNetdumpHeader, type NetdumpHeader, type ParsedNetdumpHeader,
} from '../proto/netdump.js';

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
 *   Only a herald identical in all three is a retransmit (no data yet) or a new dump (netdumpd's rule).
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
  bytes: number;
  messages: number;
  duplicates: number;
  /** Datagrams refused because their data lay beyond --max-dump-size. */
  beyondMaxDumpSize: number;
  kdh: ReturnType<typeof parseKdh>;
}

const VMCORE_BUFSZ = 128 * 1024;
const MAX_DUMPS = 1024;
/** Open sessions per client address (a real client has one; see onHerald). */
const MAX_SESSIONS_PER_ADDR = 4;
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
  lastMsg = Date.now();
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
  buf = Buffer.alloc(VMCORE_BUFSZ);
  bufOff = 0;
  bufStart = 0;
  bytes = 0;
  maxEnd = 0;
  messages = 0;
  duplicates = 0;
  /** Messages refused for data beyond --max-dump-size (logged once). */
  beyondMax = 0;
  seen = new Set<number>();
  kdh: ReturnType<typeof parseKdh> = null;
  closed = false;
  complete = false;
  constructor(readonly key: string, readonly ip: string, readonly host: string) {
    this.sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  }
}

export class NetdumpServer extends EventEmitter {
  private sock!: dgram.Socket;
  private readonly sessions = new Map<string, Session>();
  /** Session sockets of finished dumps, kept a little longer (see finish). */
  private readonly lingering = new Set<dgram.Socket>();
  private timer: NodeJS.Timeout | null = null;
  private readonly log: (line: string) => void;
  private rootReal = '';
  port = 0;
  readonly timeoutMs: number;
  /** Counters for tests and --json: datagrams dropped and why. */
  readonly drops = { runt: 0, length: 0, oversize: 0, notHerald: 0, unknownType: 0, beyondMaxDumpSize: 0, sessionLimit: 0 };
  readonly maxDumpSize: number;

  private constructor(private readonly o: NetdumpServerOptions) {
    super();
    this.log = o.log ?? (() => {});
    this.timeoutMs = (o.timeoutSec ?? 600) * 1000;
    this.maxDumpSize = o.maxDumpSize ?? DEFAULT_MAX_DUMP_SIZE;
  }

  static async start(o: NetdumpServerOptions): Promise<NetdumpServer> {
    const m = o.maxDumpSize;
    if (m !== undefined && !(Number.isInteger(m) && m >= 1 && m <= MAX_DUMP_SIZE_LIMIT)) {
      throw new UsageError(`bad --max-dump-size '${m}': expected an integer 1-${MAX_DUMP_SIZE_LIMIT} (bytes)`);
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
    s.sock.on('message', (msg, rinfo) => s.onHerald(msg, rinfo));
    s.sock.on('error', (e) => s.log(`server socket error: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      s.sock.once('error', (e: NodeJS.ErrnoException) => reject(new RuntimeError(
        `cannot listen on UDP ${o.bind ?? '0.0.0.0'}:${o.port ?? NETDUMP_PORT}: ${e.code ?? e.message}` +
        (e.code === 'EADDRINUSE' ? ' (another netdump server is running? choose --port)' : ''))));
      s.sock.bind({ address: o.bind ?? '0.0.0.0', port: o.port ?? NETDUMP_PORT }, () => resolve());
    });
    s.port = s.sock.address().port;
    const tick = Math.max(200, Math.min(10_000, s.timeoutMs / 4));
    s.timer = setInterval(() => s.timeoutClients(), tick);
    s.timer.unref();
    s.log(`Waiting for clients on ${o.bind ?? '0.0.0.0'}:${s.port}, dumps into ${s.rootReal}`);
    return s;
  }

  /**
   * Stops: every open session ends as "Dump incomplete: server stopped" (netdumpd calls it a timeout, which sends
   * the admin looking at the client), its vmcore left under the .incomplete name.
   */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const c of [...this.sessions.values()]) this.finish(c, 'stopped');
    for (const s of [...this.lingering]) this.closeSock(s);
    await new Promise<void>((r) => this.sock.close(() => r()));
  }

  private closeSock(s: dgram.Socket): void {
    if (!this.lingering.delete(s)) return;
    try { s.close(); } catch { /* already closed */ }
  }

  private onHerald(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < NETDUMP_HDR_LEN) { this.drops.runt++; return; }
    const h = readNetdumpHeader(msg)!;
    if (msg.length > HERALD_MAX) { this.drops.oversize++; return; }
    if (h.type !== NETDUMP_HERALD) {
      this.drops.notHerald++;
      this.log(`Ignoring ${NETDUMP_TYPE_NAMES[h.type] ?? `type ${h.type}`} from ${rinfo.address} on the herald port`);
      return;
    }
    if (msg.length - NETDUMP_HDR_LEN !== h.len) { this.drops.length++; return; }
    const pathArg = heraldPath(msg.subarray(NETDUMP_HDR_LEN));
    // A session is (address, source port, herald path); see the class comment for why not the address alone.
    const key = `${rinfo.address}:${rinfo.port}:${pathArg ?? ''}`;
    const existing = this.sessions.get(key);
    if (existing) {
      if (!existing.anyData) {
        // A retransmitted herald (our first ACK was lost): same session, ACK again from its socket.
        this.sendAck(existing, h.seqno);
        return;
      }
      // netdumpd: the same client heralding again after data is a new dump (it rebooted and panicked again).
      this.finish(existing, 'timeout');
    }
    const mine = [...this.sessions.values()].filter((c) => c.ip === rinfo.address);
    if (mine.length >= MAX_SESSIONS_PER_ADDR) {
      // Heralds with ever new paths must not open sockets and files without end: the oldest that never got data
      // makes room (a real client whose session that was retransmits its herald); sessions with data never do.
      const idle = mine.find((c) => !c.anyData);
      if (!idle) {
        this.drops.sessionLimit++;
        this.log(`Ignoring herald from ${rinfo.address}:${rinfo.port}: ${mine.length} dumps from it in progress`);
        return;
      }
      this.finish(idle, 'timeout');
    }
    void this.newSession(key, rinfo.address, pathArg, h.seqno);
  }

  private async newSession(key: string, ip: string, herald: string | null, seqno: number): Promise<void> {
    const c = new Session(key, ip, sanitizeComponent(ip));
    this.sessions.set(key, c);
    try {
      this.openFiles(c, sanitizeHeraldPath(herald));
    } catch (e) {
      // No ACK: the client retries its herald, then gives up saying the server never answered.
      this.log(`Can't create output files for new client ${ip}: ${(e as Error).message}`);
      this.emit('failure', { client: ip, error: `can't create output files: ${(e as Error).message}` });
      this.sessions.delete(key);
      c.sock.close();
      return;
    }
    c.sock.on('message', (m) => this.onClientMessage(c, m));
    c.sock.on('error', (e) => this.log(`client ${ip} socket error: ${e.message}`));
    try {
      await new Promise<void>((resolve, reject) => {
        c.sock.once('error', reject);
        c.sock.bind({ address: this.o.bind ?? '0.0.0.0', port: 0 }, () => {
          c.sock.connect(NETDUMP_ACKPORT, ip, () => { c.sock.removeListener('error', reject); resolve(); });
        });
      });
    } catch (e) {
      c.error = `cannot open session socket: ${(e as Error).message}`;
      this.finish(c, 'error');
      return;
    }
    c.port = c.sock.address().port;
    this.log(`New dump from client ${ip} (to ${path.join(c.dirAbs, c.vmcoreName)}), session port ${c.port}`);
    this.sendAck(c, seqno);
  }

  private openFiles(c: Session, comps: string[]): void {
    let dir = this.rootReal;
    if (comps.length) {
      const want = path.join(this.rootReal, ...comps);
      try {
        fs.mkdirSync(want, { recursive: true, mode: 0o700 });
        const real = fs.realpathSync(want);
        // A symlink inside --dir may point elsewhere: only use the path if it really lies inside.
        if (real === this.rootReal || real.startsWith(this.rootReal + path.sep)) dir = real;
        else this.log(`client ${c.ip}: path '${comps.join('/')}' leaves --dir, using the default`);
      } catch (e) {
        this.log(`client ${c.ip}: can't use path '${comps.join('/')}' (${(e as Error).message}), using the default`);
      }
    }
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
    const taken = (name: string) => { try { fs.lstatSync(path.join(dir, name)); return true; } catch { return false; } };
    for (let n = 0; n < MAX_DUMPS; n++) {
      const info = `info.${c.host}.${n}`;
      // The info file reserves the index (O_EXCL, as netdumpd); a vmcore whose info was deleted keeps its index too.
      if (taken(`vmcore.${c.host}.${n}`) || taken(`vmcore.${c.host}.${n}${INCOMPLETE_SUFFIX}`)) continue;
      try {
        c.infoFd = fs.openSync(path.join(dir, info), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw new Error(`${path.join(dir, info)}: ${(e as Error).message}`);
      }
      c.index = n;
      c.infoName = info;
      break;
    }
    if (c.index < 0) throw new Error(`${dir}: no free index below ${MAX_DUMPS}`);
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
      throw new Error(`${path.join(dir, failed)}: ${(e as Error).message}`);
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
    c.sock.send(encodeAck(seqno), (e) => {
      // Like netdumpd: a lost ACK is harmless, the client retransmits.
      if (e && !c.closed) this.log(`client ${c.ip}: send ACK ${seqno}: ${e.message}`);
    });
  }

  private onClientMessage(c: Session, msg: Buffer): void {
    if (c.closed) {
      // Lingering after a complete dump: if our FINISHED ACK was lost, the client resends FINISHED; ACK it again
      // (netdumpd has closed the socket by then and the client ends with "failed to close the transaction").
      const h = msg.length === NETDUMP_HDR_LEN ? readNetdumpHeader(msg) : null;
      if (c.complete && h && h.type === NETDUMP_FINISHED && h.len === 0) {
        c.sock.send(encodeAck(h.seqno), () => {});
      }
      return;
    }
    if (msg.length < NETDUMP_HDR_LEN) { this.drops.runt++; return; }
    if (msg.length > PKT_MAX) { this.drops.oversize++; return; }
    const h = readNetdumpHeader(msg)!;
    if (msg.length - NETDUMP_HDR_LEN !== h.len) { this.drops.length++; return; }
    if ((h.type === NETDUMP_VMCORE || h.type === NETDUMP_EKCD_KEY) && !this.inRange(c, h)) return;
    c.lastMsg = Date.now();
    const payload = msg.subarray(NETDUMP_HDR_LEN);
    switch (h.type) {
      case NETDUMP_VMCORE: return this.onVmcore(c, h, payload);
      case NETDUMP_KDH: return this.onKdh(c, h, payload);
      case NETDUMP_EKCD_KEY: return this.onKey(c, h, payload);
      case NETDUMP_FINISHED: return this.onFinished(c, h);
      default:
        this.drops.unknownType++;
        this.log(`Received unexpected message type ${h.type} from ${c.ip}`);
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

  private onVmcore(c: Session, h: NetdumpHeader, data: Buffer): void {
    c.anyData = true;
    c.messages++;
    if (c.seen.has(h.seqno)) c.duplicates++;
    else { c.seen.add(h.seqno); c.bytes += data.length; }
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
    if (c.bufOff === 0) return true;
    try {
      let done = 0;
      while (done < c.bufOff) done += fs.writeSync(c.coreFd, c.buf, done, c.bufOff - done, c.bufStart + done);
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
    c.anyData = true;
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
    } catch (e) {
      this.log(`client ${c.ip}: key write: ${(e as Error).message}`);
      return;
    }
    this.sendAck(c, h.seqno);
  }

  private onFinished(c: Session, h: NetdumpHeader): void {
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
      if (c.lastMsg + this.timeoutMs < now) this.finish(c, 'timeout');
    }
  }

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
    if (this.sessions.get(c.key) === c) this.sessions.delete(c.key);
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
    this.emit('dump', r);
  }

  /** Open sessions (for tests and status). */
  get active(): number {
    return this.sessions.size;
  }
}
