/**
 * `collect --syslog [PATH]`: each netconsole record, as an RFC 5424 message, into the local syslog socket
 * (/dev/log: rsyslog's imuxsock or journald's dev-log, both AF_UNIX SOCK_DGRAM).
 *
 *   <PRI>1 TIMESTAMP HOSTNAME kernel - netconsole [rawpoll@32473 seq=… usec=… src=… …] text
 *
 * - PRI = facility × 8 + severity from the record's own prio field (`<prio>,seq,…`: the kernel's records are facility
 *   0, kern; what user space wrote to /dev/kmsg says 1, user). Basic (non-extended) netconsole has no prio: kern.info.
 * - TIMESTAMP is when collect received the record (the kernel's own clock is monotonic, not wall time: it goes in
 *   the SD as usec); HOSTNAME the sender as collect names its log file (its IP address).
 * - APP-NAME `kernel`: these are a kernel's log lines, and `kernel` is what rsyslog's imklog and journald call the
 *   local kernel's, so existing filters (`:programname, isequal, "kernel"`, `journalctl -t kernel`) take them too;
 *   the MSGID `netconsole` and HOSTNAME tell them apart from the local kernel's.
 * - One SD element of our own, SD-ID `rawpoll@32473` (RFC 5424 §7.2.2 name@<private enterprise number>; 32473 is
 *   the PEN IANA reserves for documentation examples, RFC 5612 — rawpoll has none of its own): seq, usec (the kernel
 *   timestamp), src (address:port), frags (ncfrag pieces when more than one), release (the 'r' prefix), caller and other
 *   header fields as hdr.<name>, the dictionary as dict.<KEY>, userdata as ud.<key>, sysdata as sys.cpu, sys.taskname,
 *   sys.release, sys.msgid. Names outside SD-NAME's alphabet are changed to '_' and cut to 32 characters; values have
 *   '"', '\' and ']' escaped with '\' (§6.3.3).
 * - MSG: the text with printk's \xNN escaping undone, except control characters (< 0x20, 0x7f), which stay \xNN so
 *   that one record stays one line. MSG-ANY (no BOM): the kernel's text is bytes, not promised UTF-8.
 * - At most SYSLOG_MAX_BYTES (8 KiB) a message: a kernel record is at most 8 KiB of text (CONSOLE_EXT_LOG_MAX) and
 *   8 KiB is rsyslog's default maxMessageSize (journald takes more); RFC 5424 §6.1 only promises 2 KiB. Longer: MSG is
 *   cut (at a character boundary) and the SD says trunc="1"; SD parameters that alone would not fit are left out.
 *
 * Sends never block (native/src/unixdgram.cc): a daemon that falls behind makes send() say EAGAIN and the record is
 * counted as dropped (syslog_busy) — receiving goes on. A daemon that went away (restart) is reconnected to at most
 * once a second; meanwhile records are counted as syslog_down.
 */
import { RuntimeError } from '../errors.js';
import { loadAddon } from '../link/addon.js';
import { parseExtMessage, type Sysdata } from '../proto/netconsole.js';

export const SYSLOG_DEFAULT_PATH = '/dev/log';
/** Longest message sent (see the file comment). */
export const SYSLOG_MAX_BYTES = 8192;
/** Our SD-ID: name@PEN with 32473, IANA's example PEN (RFC 5612), as RFC 5424's own examples use. */
export const RAWPOLL_SD_ID = 'rawpoll@32473';
/** Kernel facility (0) and info severity for basic netconsole text, which carries no prio. */
const BASIC_FACILITY = 0;
const BASIC_LEVEL = 6;

/** One message to forward: a netconsole record and where/when it came from. */
export interface SyslogRecord {
  /** Receive time. */
  time: Date;
  /** HOSTNAME: the sender as collect names it. */
  host: string;
  /** address:port of the sender. */
  src: string;
  facility: number;
  level: number;
  /** The text, unescaped. */
  text: Uint8Array;
  seq?: number;
  usec?: number;
  frags?: number;
  release?: string | null;
  headerExtra?: string[];
  dict?: Array<[string, string]>;
  userdata?: Array<[string, string]>;
  sysdata?: Sysdata;
}

/** RFC 5424 PRI: facility × 8 + severity. Facilities outside 0-23 (a /dev/kmsg writer may say anything) become user (1). */
export function syslogPri(facility: number, level: number): number {
  const f = Number.isInteger(facility) && facility >= 0 && facility <= 23 ? facility : 1;
  return f * 8 + (level & 7);
}

/** PARAM-VALUE escaping (RFC 5424 §6.3.3): '"', '\' and ']' get a '\' in front. */
export function escapeSdValue(s: string): string {
  // Most values (numbers, addresses, task names) have none: no new string for them.
  if (s.indexOf('"') < 0 && s.indexOf('\\') < 0 && s.indexOf(']') < 0) return s;
  return s.replace(/["\\\]]/g, (c) => '\\' + c);
}

/** SD-NAME: 1-32 PRINTUSASCII except '=', SP, ']', '"'; anything else becomes '_'. */
export function sdName(s: string): string {
  const n = s.replace(/[^\x21-\x7e]|[= \]"]/g, '_').slice(0, 32);
  return n === '' ? '_' : n;
}

function sdParams(r: SyslogRecord): Array<[string, string]> {
  const p: Array<[string, string]> = [];
  if (r.seq !== undefined) p.push(['seq', String(r.seq)]);
  if (r.usec !== undefined) p.push(['usec', String(r.usec)]);
  p.push(['src', r.src]);
  if (r.frags !== undefined && r.frags > 1) p.push(['frags', String(r.frags)]);
  if (r.release) p.push(['release', r.release]);
  for (const h of r.headerExtra ?? []) {
    const eq = h.indexOf('=');
    p.push(eq > 0 ? [sdName('hdr.' + h.slice(0, eq)), h.slice(eq + 1)] : [sdName('hdr.' + h), '']);
  }
  for (const [k, v] of r.dict ?? []) p.push([sdName('dict.' + k), v]);
  for (const [k, v] of r.userdata ?? []) p.push([sdName('ud.' + k), v]);
  const s = r.sysdata ?? {};
  if (s.cpu !== undefined) p.push(['sys.cpu', String(s.cpu)]);
  if (s.taskname !== undefined) p.push(['sys.taskname', s.taskname]);
  if (s.release !== undefined) p.push(['sys.release', s.release]);
  if (s.msgid !== undefined) p.push(['sys.msgid', String(s.msgid)]);
  return p;
}

const HEX = '0123456789abcdef';

/** The text for MSG: bytes as they are, control characters as \xNN. */
function msgBytes(text: Uint8Array): Buffer {
  let n = 0;
  for (let i = 0; i < text.length; i++) n += text[i] < 0x20 || text[i] === 0x7f ? 4 : 1;
  if (n === text.length) return Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  const out = Buffer.allocUnsafe(n);
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c < 0x20 || c === 0x7f) {
      out[o++] = 0x5c; out[o++] = 0x78; out[o++] = HEX.charCodeAt(c >> 4); out[o++] = HEX.charCodeAt(c & 15);
    } else {
      out[o++] = c;
    }
  }
  return out;
}

/** Where to cut `b` to at most `n` bytes without splitting a UTF-8 sequence or a \xNN escape. */
function cutAt(b: Buffer, n: number): number {
  if (n >= b.length) return b.length;
  let i = n;
  while (i > 0 && (b[i] & 0xc0) === 0x80) i--;   // b[i] would be a continuation byte: cut before its lead byte
  for (let j = Math.max(0, i - 3); j < i; j++) if (b[j] === 0x5c && b[j + 1] === 0x78) { i = j; break; }
  return i;
}

/** TIMESTAMP, remembered for the millisecond: a batch of records shares it. */
let isoMs = NaN;
let isoStr = '';
function isoTime(t: Date): string {
  const ms = t.getTime();
  if (ms !== isoMs) {
    isoMs = ms;
    isoStr = t.toISOString();
  }
  return isoStr;
}

/**
 * One RFC 5424 message, at most `max` bytes (see the file comment). HOSTNAME, APP-NAME and MSGID are fixed forms;
 * HOSTNAME falls back to '-' (NILVALUE) if empty.
 */
export function formatSyslog(r: SyslogRecord, max = SYSLOG_MAX_BYTES): Buffer {
  return formatSyslogTrunc(r, max).bytes;
}

/** formatSyslog, and whether it had to cut. */
export function formatSyslogTrunc(r: SyslogRecord, max = SYSLOG_MAX_BYTES): { bytes: Buffer; truncated: boolean } {
  const host = r.host.replace(/[^\x21-\x7e]/g, '_').slice(0, 255) || '-';
  const head = `<${syslogPri(r.facility, r.level)}>1 ${isoTime(r.time)} ${host} kernel - netconsole `;
  const params = sdParams(r);
  const sdOf = (ps: Array<[string, string]>) => `[${RAWPOLL_SD_ID}${ps.map(([k, v]) => ` ${k}="${escapeSdValue(v)}"`).join('')}]`;
  const msg = msgBytes(r.text);
  let sd = sdOf(params);
  const front = head + sd + ' ';
  let fixed = Buffer.byteLength(front);
  if (fixed + msg.length <= max) {
    // One buffer, written in place: this runs once per record on the receive thread.
    const out = Buffer.allocUnsafe(fixed + msg.length);
    out.write(front, 0, 'utf8');
    out.set(msg, fixed);
    return { bytes: out, truncated: false };
  }
  // Too long: say so, leave out the parameters that do not fit (the last first), then cut the text.
  const ps = [...params, ['trunc', '1'] as [string, string]];
  for (;;) {
    sd = sdOf(ps);
    fixed = Buffer.byteLength(head) + Buffer.byteLength(sd) + 1;
    if (fixed <= max / 2 || ps.length <= 2) break;
    ps.splice(ps.length - 2, 1);
  }
  const room = Math.max(0, max - fixed);
  const cut = msg.subarray(0, cutAt(msg, room));
  return { bytes: Buffer.concat([Buffer.from(head + sd + ' ', 'utf8'), cut]).subarray(0, max), truncated: true };
}

/**
 * The syslog records of one netconsole record as collect stores it: an extended record (one message; its parts from
 * parseExtMessage) or a basic datagram (one message per non-empty line, kern.info).
 */
export function netconsoleToSyslog(bytes: Uint8Array, from: { host: string; address: string; port: number }, time: Date, frags = 1): SyslogRecord[] {
  const src = `${from.address}:${from.port}`;
  const m = parseExtMessage(bytes);
  if (m) {
    return [{
      time, host: from.host, src, facility: m.facility, level: m.level, text: m.text, seq: m.seq, usec: m.usec, frags,
      release: m.release, headerExtra: m.headerExtra, dict: m.dict, userdata: m.userdata, sysdata: m.sysdata,
    }];
  }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: SyslogRecord[] = [];
  for (let s = 0; s < b.length;) {
    let e = b.indexOf(0x0a, s);
    if (e < 0) e = b.length;
    if (e > s) out.push({ time, host: from.host, src, facility: BASIC_FACILITY, level: BASIC_LEVEL, text: b.subarray(s, e) });
    s = e + 1;
  }
  return out;
}

/** Why a record did not reach syslog: collect counts it under this name. */
export type SyslogDropReason = 'syslog_busy' | 'syslog_down' | 'syslog_error';

interface UnixDgramAddon {
  unixDgramOpen(path: string): number;
  unixDgramSend(fd: number, buf: Uint8Array): string;
  unixDgramClose(fd: number): void;
}

function addon(): UnixDgramAddon {
  const a = loadAddon() as unknown as Partial<UnixDgramAddon>;
  if (typeof a.unixDgramOpen !== 'function') {
    throw new RuntimeError('rawpoll\'s native addon predates --syslog (no unixDgramOpen); rebuild it with "npm run build:native"');
  }
  return a as UnixDgramAddon;
}

/** Reconnects to a daemon that went away at most this often. */
const RECONNECT_MS = 1000;

/** A connected, non-blocking unix datagram socket to syslog and the count of what it sent and refused. */
export class SyslogForwarder {
  readonly stats = { sent: 0, syslog_busy: 0, syslog_down: 0, syslog_error: 0, truncated: 0 };
  private fd: number | null;
  private lastTry = 0;

  private constructor(readonly path: string, private readonly a: UnixDgramAddon, fd: number, private readonly max: number) {
    this.fd = fd;
  }

  /**
   * Connects to `path` now, so a wrong path fails at start-up: RuntimeError (exit 1) naming it and what would work.
   */
  static open(path = SYSLOG_DEFAULT_PATH, o: { maxBytes?: number } = {}): SyslogForwarder {
    const a = addon();
    try {
      return new SyslogForwarder(path, a, a.unixDgramOpen(path), o.maxBytes ?? SYSLOG_MAX_BYTES);
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      const why = code === 'ENOENT' ? 'no such socket (is a syslog daemon running? rsyslog and journald create /dev/log)'
        : code === 'ECONNREFUSED' ? 'nothing is listening on it (a syslog daemon that stopped leaves the socket file behind)'
        : code === 'EPROTOTYPE' ? 'it is a stream (SOCK_STREAM) socket; --syslog speaks datagrams (SOCK_DGRAM), as rsyslog\'s imuxsock and journald\'s /dev/log do'
        : code === 'ENOTSOCK' ? 'not a socket'
        : code === 'ENAMETOOLONG' ? 'a unix socket path is at most 107 bytes'
        : (e as Error).message;
      throw new RuntimeError(`cannot use syslog socket ${path}: ${code ? code + ', ' : ''}${why}; give --syslog PATH of a unix datagram socket`);
    }
  }

  /**
   * A netconsole record as collect stores it (netconsoleToSyslog), received now; HOSTNAME is the sender's address,
   * the name collect gives its log. A basic datagram of several lines is one record: the first refusal is its reason.
   */
  forwardNetconsole(bytes: Uint8Array, from: { address: string; port: number }, frags = 1): SyslogDropReason | null {
    let why: SyslogDropReason | null = null;
    for (const r of netconsoleToSyslog(bytes, { host: from.address, address: from.address, port: from.port }, new Date(), frags)) {
      why = this.forward(r) ?? why;
    }
    return why;
  }

  /** Formats and sends; returns null when it went out, else why not (counted in stats too). Never blocks, never throws. */
  forward(r: SyslogRecord): SyslogDropReason | null {
    const { bytes, truncated } = formatSyslogTrunc(r, this.max);
    if (truncated) this.stats.truncated++;
    return this.send(bytes);
  }

  private send(msg: Buffer): SyslogDropReason | null {
    if (this.fd === null && !this.reconnect()) return this.count('syslog_down');
    let code = this.a.unixDgramSend(this.fd!, msg);
    if (code === 'ECONNREFUSED' || code === 'ENOTCONN' || code === 'ENOENT') {
      // The daemon restarted: its new socket is a new file. Connect again (rate-limited) and retry once.
      this.a.unixDgramClose(this.fd!);
      this.fd = null;
      if (!this.reconnect()) return this.count('syslog_down');
      code = this.a.unixDgramSend(this.fd!, msg);
    }
    if (code === '') {
      this.stats.sent++;
      return null;
    }
    return this.count(code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'ENOBUFS' ? 'syslog_busy' : 'syslog_error');
  }

  private reconnect(): boolean {
    const now = Date.now();
    if (now - this.lastTry < RECONNECT_MS) return false;
    this.lastTry = now;
    try {
      this.fd = this.a.unixDgramOpen(this.path);
      return true;
    } catch {
      return false;
    }
  }

  private count(reason: SyslogDropReason): SyslogDropReason {
    this.stats[reason]++;
    return reason;
  }

  close(): void {
    if (this.fd !== null) this.a.unixDgramClose(this.fd);
    this.fd = null;
  }
}
