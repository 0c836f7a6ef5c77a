/**
 * netconsole payload formats (PROTOCOLS.md §2), no I/O.
 *
 * Mirrors Linux drivers/net/netconsole.c: the config string parser (netconsole_parser_cmdline + the `+`/`r`
 * prefixes of alloc_param_target), the basic console chunking (write_msg), the extended format with
 * release prefix and userdata/sysdata ("extradata", send_ext_msg_udp / send_msg_no_fragmentation /
 * send_msg_fragmented / send_fragmented_body), and the receiving half: datagram parser + ncfrag reassembler.
 */
import { UsageError } from '../errors.js';
import { AddressError, parseIpv4 } from '../wire/addr.js';
import type { IpAddress } from '../wire/endpoint.js';
import { parseIpv6Addr } from '../wire/ipv6.js';
import { parseMac } from '../wire/mac.js';

export const NETCONSOLE_SRC_PORT = 6665;
export const NETCONSOLE_DST_PORT = 6666;
/** MAX_PRINT_CHUNK: no netconsole datagram carries more than 1000 bytes of UDP payload. */
export const MAX_PRINT_CHUNK = 1000;

// ---------------------------------------------------------------------------------------------------------------
// Config string: [+][r][src-port]@[src-ip]/[dev],[tgt-port]@<tgt-ip>/[tgt-mac]   (targets separated by ';')

export interface NetconsoleTarget {
  extended: boolean;
  release: boolean;
  srcPort: number;
  src: IpAddress | null;     // null: the interface's own address (of the target's family)
  dev: string | null;        // null: not given (the kernel would use eth0; rawpoll makes the user say -i)
  devMac: Buffer | null;     // newer kernels accept the local interface's MAC in place of its name
  dstPort: number;
  dst: IpAddress;            // IPv4, or IPv6 written bare as the kernel takes it (netpoll_parse_options)
  dstMac: Buffer | null;     // null: not given (kernel: broadcast; rawpoll: ARP unless --broadcast)
}

const CONFIG_SYNTAX = '[+][r][src-port]@[src-ip]/[dev],[tgt-port]@<tgt-ip>/[tgt-mac]';

function configError(whole: string, part: string, why: string): UsageError {
  return new UsageError(`bad netconsole config '${whole}' at '${part}': ${why} (syntax ${CONFIG_SYNTAX})`);
}

function configPort(whole: string, s: string, what: string): number {
  // kstrtou16: decimal digits only, 0-65535
  if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) throw configError(whole, s, `${what} must be a number 0-65535`);
  return Number(s);
}

/** netpoll_parse_options: an address with a ':' is IPv6 (bare: no brackets; no zone, the device names the link). */
function configIp(whole: string, s: string, what: string): IpAddress {
  try {
    return s.includes(':') ? { family: 6, ip6: parseIpv6Addr(s, what) } : { family: 4, ip: parseIpv4(s, what) };
  } catch (e) {
    if (!(e instanceof AddressError)) throw e;
    throw configError(whole, s, `${what} must be an IPv4 address like 10.0.0.9 or an IPv6 one like fd00::9, written bare ` +
      '(no brackets, no zone: the device names the link)');
  }
}

function configMac(whole: string, s: string, what: string): Buffer {
  try {
    return parseMac(s, what);
  } catch {
    throw configError(whole, s, `${what} must be six hex bytes like 02:00:00:00:00:09`);
  }
}

/** One target, same grammar and defaults as the kernel (6665, 6666), IPv4 or IPv6 (one family for both addresses). */
export function parseNetconsoleTarget(spec: string): NetconsoleTarget {
  const whole = spec;
  let cur = spec.trim();
  const t: NetconsoleTarget = {
    extended: false, release: false, srcPort: NETCONSOLE_SRC_PORT, src: null, dev: null, devMac: null,
    dstPort: NETCONSOLE_DST_PORT, dst: { family: 4, ip: 0 }, dstMac: null,
  };
  if (cur.startsWith('+')) {
    t.extended = true;
    cur = cur.slice(1);
  }
  if (cur.startsWith('r')) {
    if (!t.extended) throw configError(whole, cur, "'r' (prepend release) needs the extended format: start with '+r'");
    t.release = true;
    cur = cur.slice(1);
  }
  // [src-port]@
  let at = cur.indexOf('@');
  if (at < 0) throw configError(whole, cur, "missing '@' after the source port");
  if (at > 0) t.srcPort = configPort(whole, cur.slice(0, at), 'source port');
  cur = cur.slice(at + 1);
  // [src-ip]/
  let slash = cur.indexOf('/');
  if (slash < 0) throw configError(whole, cur, "missing '/' after the source IP");
  const srcText = cur.slice(0, slash);
  if (slash > 0) t.src = configIp(whole, srcText, 'source IP');
  cur = cur.slice(slash + 1);
  // [dev],
  const comma = cur.indexOf(',');
  if (comma < 0) throw configError(whole, cur, "missing ',' between the local and the target part");
  const dev = cur.slice(0, comma);
  if (dev.includes(':')) t.devMac = configMac(whole, dev, 'local interface MAC');
  else if (dev.length > 15) throw configError(whole, dev, 'interface names are at most 15 characters');
  else if (dev) t.dev = dev;
  cur = cur.slice(comma + 1);
  // [tgt-port]@
  at = cur.indexOf('@');
  if (at < 0) throw configError(whole, cur, "missing '@' before the target IP");
  if (at > 0) t.dstPort = configPort(whole, cur.slice(0, at), 'target port');
  cur = cur.slice(at + 1);
  // <tgt-ip>/[tgt-mac]
  slash = cur.indexOf('/');
  if (slash < 0) throw configError(whole, cur, "missing '/' after the target IP (write '/' even without a MAC)");
  if (slash === 0) throw configError(whole, cur, 'the target IP is required');
  const dstText = cur.slice(0, slash);
  t.dst = configIp(whole, dstText, 'target IP');
  if (t.src && t.src.family !== t.dst.family) {
    throw new UsageError(`bad netconsole config '${whole}': source IP ${srcText} and target IP ${dstText} are different families; ` +
      'both IPv4 or both IPv6 (the kernel\'s netpoll_parse_options refuses a mix too)');
  }
  const mac = cur.slice(slash + 1);
  if (mac) t.dstMac = configMac(whole, mac, 'target MAC');
  return t;
}

/** The kernel's module option: several targets separated by ';'. */
export function parseNetconsoleConfig(s: string): NetconsoleTarget[] {
  const parts = String(s).split(';');
  // A trailing ';' too: the kernel's parser rejects the empty target it leaves (issue 13).
  if (parts.some((p) => p.trim() === '')) {
    throw new UsageError(`bad netconsole config '${s}': empty target (syntax ${CONFIG_SYNTAX}, targets separated by ';')`);
  }
  return parts.map(parseNetconsoleTarget);
}

// ---------------------------------------------------------------------------------------------------------------
// Basic format: the console text itself, at most 1000 bytes per datagram (write_msg).

export function basicDatagrams(text: Uint8Array): Buffer[] {
  const b = Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  const out: Buffer[] = [];
  for (let off = 0; off < b.length; off += MAX_PRINT_CHUNK) out.push(b.subarray(off, off + MAX_PRINT_CHUNK));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Extended format: one /dev/kmsg-style record (printk's info_print_ext_header + msg_print_ext_body).

export interface ExtRecord {
  level: number;             // 0-7
  facility?: number;         // default 1 (user) for records rawpoll makes up; the kernel's own are facility 0
  seq: number;
  usec: number;
  cont?: boolean;            // flag 'c' instead of '-'
  text: Uint8Array | string;
  dict?: Array<[string, string]>;   // e.g. SUBSYSTEM/DEVICE, printed as ` KEY=value\n`
}

const HEX = '0123456789abcdef';

/** printk's escaping: bytes < 0x20, >= 0x7f and '\' become \xNN (lowercase hex), then `endc`. */
export function escapeExtText(text: Uint8Array | string, endc?: string): Buffer {
  const src = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    n += c < 0x20 || c >= 0x7f || c === 0x5c ? 4 : 1;
  }
  const out = Buffer.allocUnsafe(n + (endc ? 1 : 0));
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c < 0x20 || c >= 0x7f || c === 0x5c) {
      out[o++] = 0x5c; out[o++] = 0x78; out[o++] = HEX.charCodeAt(c >> 4); out[o++] = HEX.charCodeAt(c & 15);
    } else {
      out[o++] = c;
    }
  }
  if (endc) out[o++] = endc.charCodeAt(0);
  return out;
}

/** Inverse of escapeExtText (only \xNN sequences are special). */
export function unescapeExtText(s: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(s.length);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === 0x5c && s[i + 1] === 0x78 && i + 3 < s.length && isHex(s[i + 2]) && isHex(s[i + 3])) {
      out[o++] = parseInt(String.fromCharCode(s[i + 2], s[i + 3]), 16);
      i += 3;
    } else {
      out[o++] = s[i];
    }
  }
  return out.subarray(0, o);
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46));
}

/** `<prio>,<seq>,<usec>,<flag>;<escaped text>\n` followed by ` KEY=value\n` dictionary lines. */
export function formatExtRecord(r: ExtRecord): Buffer {
  if (!(Number.isInteger(r.level) && r.level >= 0 && r.level <= 7)) {
    throw new UsageError(`bad log level '${r.level}': expected 0 (emerg) to 7 (debug)`);
  }
  const facility = r.facility ?? 1;
  const head = Buffer.from(`${(facility << 3) | r.level},${r.seq},${Math.floor(r.usec)},${r.cont ? 'c' : '-'};`, 'latin1');
  const parts: Buffer[] = [head, escapeExtText(r.text, '\n')];
  for (const [k, v] of r.dict ?? []) {
    if (!v) continue;   // msg_add_dict_text skips empty values
    parts.push(Buffer.from(' '), escapeExtText(k, '='), escapeExtText(v, '\n'));
  }
  return Buffer.concat(parts);
}

export interface Sysdata { cpu?: number; taskname?: string; release?: string; msgid?: number }

/**
 * "extradata": userdata entries ` key=value\n` (configfs order, not escaped), then the enabled sysdata fields in
 * the kernel's fixed order cpu, taskname, release, msgid (prepare_extradata).
 */
export function formatExtradata(userdata: Array<[string, string]> = [], sys: Sysdata = {}): Buffer {
  let s = '';
  for (const [k, v] of userdata) if (v) s += ` ${k}=${v}\n`;
  if (sys.cpu !== undefined) s += ` cpu=${sys.cpu}\n`;
  if (sys.taskname !== undefined) s += ` taskname=${sys.taskname}\n`;
  if (sys.release !== undefined) s += ` release=${sys.release}\n`;
  if (sys.msgid !== undefined) s += ` msgid=${sys.msgid >>> 0}\n`;
  return Buffer.from(s, 'utf8');
}

/**
 * The datagrams the kernel sends for one extended record `msg` (header;body, as formatExtRecord or /dev/kmsg give it).
 * Fits in one: `[release,]msg extradata`. Otherwise split at the first ';': data = body + extradata, and every
 * datagram is `[release,]header,ncfrag=<offset>/<len(data)>;<next bytes of data>`, filled up to 1000 bytes.
 * (The kernel fills msgbody then extradata in two memcpy steps per packet; the bytes are the same as one
 * contiguous split of body+extradata.)
 */
export function extendedDatagrams(msg: Uint8Array, o: { release?: string; extradata?: Uint8Array } = {}): Buffer[] {
  const m = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  const rel = o.release !== undefined ? Buffer.from(o.release + ',', 'utf8') : Buffer.alloc(0);
  const extra = o.extradata ? Buffer.from(o.extradata.buffer, o.extradata.byteOffset, o.extradata.byteLength) : Buffer.alloc(0);
  if (rel.length + m.length + extra.length <= MAX_PRINT_CHUNK) return [Buffer.concat([rel, m, extra])];
  const semi = m.indexOf(0x3b);
  if (semi < 0) throw new UsageError('extended netconsole record has no \';\' between header and text');
  const header = Buffer.concat([rel, m.subarray(0, semi)]);
  const data = Buffer.concat([m.subarray(semi + 1), extra]);
  const out: Buffer[] = [];
  for (let off = 0; off < data.length;) {
    const h = Buffer.from(`,ncfrag=${off}/${data.length};`, 'latin1');
    const room = MAX_PRINT_CHUNK - header.length - h.length;
    if (room <= 0) throw new UsageError(`extended netconsole header too long (${header.length} bytes) to fragment`);
    const n = Math.min(data.length - off, room);
    out.push(Buffer.concat([header, h, data.subarray(off, off + n)]));
    off += n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Receiving: datagram parser and ncfrag reassembler (what netconsd does).

export interface ExtDatagram {
  release: string | null;    // present when the sender used 'r'
  prio: number; facility: number; level: number;
  seq: number; usec: number; cont: boolean;
  extra: string[];           // other header fields, e.g. "caller=T123"
  /** The header as it would be without ncfrag: `[release,]prio,seq,usec,flag[,…]` (no ';'). */
  header: string;
  frag: { offset: number; total: number } | null;
  body: Buffer;              // bytes after the first ';' (a view)
}

const MAX_HEADER = 512;
const DIGITS = /^\d{1,20}$/;

/**
 * Parse one datagram as extended netconsole, or return null if it is not (then it is basic text).
 * A first header field that is not a number is the release ('r'); a kernel release never is one.
 */
export function parseExtDatagram(d: Uint8Array): ExtDatagram | null {
  const b = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  const semi = b.subarray(0, MAX_HEADER).indexOf(0x3b);
  if (semi < 0) return null;
  const head = b.toString('latin1', 0, semi);
  if (/[\s\x00-\x1f\x7f-\xff]/.test(head)) return null;
  const f = head.split(',');
  let release: string | null = null;
  if (f.length > 0 && !DIGITS.test(f[0])) release = f.shift()!;
  if (f.length < 4 || !DIGITS.test(f[0]) || !DIGITS.test(f[1]) || !DIGITS.test(f[2])) return null;
  if (!/^[-c]/.test(f[3])) return null;
  const prio = Number(f[0]);
  const extra: string[] = [];
  let frag: ExtDatagram['frag'] = null;
  const kept = release !== null ? [release, ...f.slice(0, 4)] : f.slice(0, 4);
  for (const x of f.slice(4)) {
    const m = /^ncfrag=(\d{1,10})\/(\d{1,10})$/.exec(x);
    if (m) {
      if (frag) return null;
      frag = { offset: Number(m[1]), total: Number(m[2]) };
      if (frag.total === 0 || frag.offset >= frag.total) return null;
    } else {
      extra.push(x);
      kept.push(x);
    }
  }
  return {
    release, prio, facility: prio >> 3, level: prio & 7, seq: Number(f[1]), usec: Number(f[2]),
    cont: f[3].startsWith('c'), extra, header: kept.join(','), frag, body: b.subarray(semi + 1),
  };
}

/** A complete extended record: exactly the bytes the kernel would have sent unfragmented. */
export interface ExtRecordBytes {
  key: string; seq: number; header: string; bytes: Buffer; fragments: number;
}

/**
 * Why a piece (too_big, bad_range, too_many_fragments) or an open record (evicted, superseded, shutdown) was dropped:
 * short names a receiver counts by.
 */
export type NcfragDropReason = 'too_big' | 'bad_range' | 'too_many_fragments' | 'evicted' | 'superseded' | 'shutdown';

export const NCFRAG_DEFAULTS = {
  /** Records under reassembly, all sources together. */
  maxOpen: 64,
  /** Reassembly bytes per source key. */
  maxBytesPerKey: 1024 * 1024,
  /** Largest ncfrag total accepted. */
  maxRecordBytes: 64 * 1024,
  /**
   * Pieces that brought new bytes to one record. The kernel cuts a record (at most CONSOLE_EXT_LOG_MAX = 8 KiB, plus
   * extradata) into pieces of up to 1000 bytes: a dozen or so.
   */
  maxFragmentsPerRecord: 1024,
};

interface Pending {
  key: string; header: string; seq: number; total: number;
  /** Filled as pieces come; read only once every byte has arrived, so it need not start zeroed. */
  buf: Buffer;
  /** One bit per byte of `total`: which bytes arrived. A piece costs O(its length), whatever came before it. */
  seen: Uint8Array;
  have: number; fragments: number;
  /** Pieces refused since the record reached its fragment budget. */
  refused: number;
}

/** One source's open records in arrival order (its oldest first) and the bytes they reserve. */
interface KeyState { bytes: number; open: Map<string, Pending> }

export type ReassemblyResult =
  | { kind: 'complete'; record: ExtRecordBytes }
  | { kind: 'partial' }                                   // stored, waiting for more pieces
  | { kind: 'duplicate' }                                 // a piece we already have (retransmit/dup)
  // Inconsistent or over the limits. `repeat`: not the record's first piece refused for this (a flood of them needs
  // counting, not one report each).
  | { kind: 'rejected'; code: NcfragDropReason; reason: string; repeat?: boolean };

export interface EvictedPartial {
  key: string; seq: number; header: string; have: number; total: number; fragments: number;
  code: NcfragDropReason; reason: string;
}

/**
 * Reassembles ncfrag pieces by (source key, seq). Pieces may come in any order, twice, or overlapping. Every piece's
 * cost is bounded: O(its length) to mark its bytes in the record's bitmap, O(1) for the rest, and a new record
 * O(1) plus its allocation (at most maxRecordBytes + 1/8 of it). Budgets: a record at most maxRecordBytes (else the
 * piece is rejected, too_big) and maxFragmentsPerRecord pieces that brought new bytes (else further pieces are
 * rejected, too_many_fragments, all reported but the first as `repeat`); at most maxOpen records open in all and maxBytesPerKey bytes of them per source:
 * beyond, the oldest open record (of that source) is evicted and reported through onEvict.
 */
export class NcfragReassembler {
  private readonly open = new Map<string, Pending>();   // insertion order: the oldest record first
  private readonly keys = new Map<string, KeyState>();
  private bytes = 0;
  private readonly maxOpen: number;
  private readonly maxBytesPerKey: number;
  private readonly maxRecordBytes: number;
  private readonly maxFragments: number;

  constructor(private readonly o: {
    maxOpen?: number; maxBytesPerKey?: number; maxRecordBytes?: number; maxFragmentsPerRecord?: number;
    onEvict?: (e: EvictedPartial) => void;
  } = {}) {
    this.maxOpen = Math.max(1, o.maxOpen ?? NCFRAG_DEFAULTS.maxOpen);
    this.maxBytesPerKey = o.maxBytesPerKey ?? NCFRAG_DEFAULTS.maxBytesPerKey;
    this.maxRecordBytes = o.maxRecordBytes ?? NCFRAG_DEFAULTS.maxRecordBytes;
    this.maxFragments = Math.max(1, o.maxFragmentsPerRecord ?? NCFRAG_DEFAULTS.maxFragmentsPerRecord);
  }

  get openCount(): number { return this.open.size; }
  /** Bytes reserved by open records (their totals). */
  get openBytes(): number { return this.bytes; }

  add(key: string, dg: ExtDatagram): ReassemblyResult {
    const frag = dg.frag;
    if (!frag) return { kind: 'complete', record: { key, seq: dg.seq, header: dg.header, bytes: joinRecord(dg.header, dg.body), fragments: 1 } };
    if (frag.total > this.maxRecordBytes) {
      return { kind: 'rejected', code: 'too_big', reason: `ncfrag total ${frag.total} over the ${this.maxRecordBytes}-byte limit` };
    }
    if (frag.offset + dg.body.length > frag.total) {
      return { kind: 'rejected', code: 'bad_range', reason: `ncfrag piece ${frag.offset}+${dg.body.length} runs past total ${frag.total}` };
    }
    const id = `${key}\u0000${dg.seq}`;
    let p = this.open.get(id);
    if (p && (p.total !== frag.total || p.header !== dg.header)) {
      // Same seq, different record: the sender restarted (seq reused). Drop the old one.
      this.evict(id, p, 'superseded', 'superseded by a different record with the same seq');
      p = undefined;
    }
    if (!p) {
      this.makeRoom(key, frag.total);
      p = {
        key, header: dg.header, seq: dg.seq, total: frag.total, buf: Buffer.allocUnsafeSlow(frag.total),
        seen: new Uint8Array((frag.total + 7) >>> 3), have: 0, fragments: 0, refused: 0,
      };
      this.open.set(id, p);
      let ks = this.keys.get(key);
      if (!ks) this.keys.set(key, (ks = { bytes: 0, open: new Map() }));
      ks.open.set(id, p);
      ks.bytes += frag.total;
      this.bytes += frag.total;
    }
    if (p.fragments >= this.maxFragments) {
      // It cannot complete without another piece: every further one, even a duplicate, is refused.
      return {
        kind: 'rejected', code: 'too_many_fragments', repeat: ++p.refused > 1,
        reason: `record seq ${p.seq} already took ${p.fragments} pieces (limit ${this.maxFragments}) and has ${p.have} of ${p.total} bytes`,
      };
    }
    const start = frag.offset, end = frag.offset + dg.body.length;
    const added = markRange(p.seen, start, end);
    if (added === 0) return { kind: 'duplicate' };
    dg.body.copy(p.buf, start);
    p.have += added;
    p.fragments++;
    if (p.have < p.total) return { kind: 'partial' };
    this.drop(id, p);
    return { kind: 'complete', record: { key, seq: p.seq, header: p.header, bytes: joinRecord(p.header, p.buf), fragments: p.fragments } };
  }

  /** Drop everything still open (reported through onEvict with code shutdown and the given reason). */
  flush(reason = 'incomplete at shutdown'): void {
    for (const [id, p] of [...this.open]) this.evict(id, p, 'shutdown', reason);
  }

  /** Oldest records give way, O(1) each: the first of the open table, or of this source's own table. */
  private makeRoom(key: string, need: number): void {
    while (this.open.size >= this.maxOpen) {
      const [id, p] = this.open.entries().next().value as [string, Pending];
      this.evict(id, p, 'evicted', 'too many open fragmented records');
    }
    for (let ks = this.keys.get(key); ks && ks.bytes + need > this.maxBytesPerKey; ks = this.keys.get(key)) {
      const [id, p] = ks.open.entries().next().value as [string, Pending];
      this.evict(id, p, 'evicted', 'per-source reassembly memory limit');
    }
  }

  private evict(id: string, p: Pending, code: NcfragDropReason, reason: string): void {
    this.drop(id, p);
    this.o.onEvict?.({ key: p.key, seq: p.seq, header: p.header, have: p.have, total: p.total, fragments: p.fragments, code, reason });
  }

  private drop(id: string, p: Pending): void {
    this.open.delete(id);
    this.bytes -= p.total;
    const ks = this.keys.get(p.key)!;
    ks.open.delete(id);
    ks.bytes -= p.total;
    if (ks.open.size === 0) this.keys.delete(p.key);
  }
}

function joinRecord(header: string, data: Buffer): Buffer {
  const h = Buffer.from(header + ';', 'latin1');
  return Buffer.concat([h, data]);
}

/** Set bits per byte value. */
const POPCOUNT = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1];

/** Marks bytes [start, end) as arrived, bit i&7 of seen[i>>3] per byte i; returns how many were new. */
export function markRange(seen: Uint8Array, start: number, end: number): number {
  let added = 0;
  let i = start;
  // Single bits up to a byte boundary, then whole bytes of the bitmap, then the single bits left.
  for (; i < end && (i & 7) !== 0; i++) {
    const m = 1 << (i & 7);
    if ((seen[i >>> 3] & m) === 0) { seen[i >>> 3] |= m; added++; }
  }
  for (; i + 8 <= end; i += 8) {
    added += 8 - POPCOUNT[seen[i >>> 3]];
    seen[i >>> 3] = 0xff;
  }
  for (; i < end; i++) {
    const m = 1 << (i & 7);
    if ((seen[i >>> 3] & m) === 0) { seen[i >>> 3] |= m; added++; }
  }
  return added;
}

// ---------------------------------------------------------------------------------------------------------------
// One target's formatter: messages in, datagram payloads out (what netconsole's write_msg / write_ext_msg do).

export interface NetconsoleFormatOptions {
  extended: boolean;
  /** Prepend `<release>,` (extended only), the kernel's 'r'. */
  release?: string;
  /** ` key=value` lines (extended only), configfs userdata order. */
  userdata?: Array<[string, string]>;
  /** Enabled sysdata fields and their values; msgid counts per target from 1. */
  sysdata?: { cpu?: () => number; taskname?: string; release?: string; msgid?: boolean };
  /** Level (0-7) and facility of records made from plain lines; default 6 (info), facility 1 (user) like /dev/kmsg writes. */
  level?: number;
  facility?: number;
}

export class NetconsoleFormatter {
  /** Next seq for records made from lines (from 0, as the issue asks). */
  seq = 0;
  private msgid = 0;
  constructor(readonly o: NetconsoleFormatOptions) {
    if (o.release !== undefined && !o.extended) throw new UsageError("release prefix needs the extended format (the kernel refuses 'r' without '+')");
    if ((o.userdata?.length || o.sysdata) && !o.extended) throw new UsageError('userdata/sysdata need the extended format (the kernel sends them only there)');
    if (o.level !== undefined && !(Number.isInteger(o.level) && o.level >= 0 && o.level <= 7)) {
      throw new UsageError(`bad log level '${o.level}': expected 0 (emerg) to 7 (debug)`);
    }
  }

  /** A plain line of text (no newline) seen at monotonic time `usec`. */
  line(text: Uint8Array, usec: number): Buffer[] {
    if (!this.o.extended) return basicDatagrams(Buffer.concat([text, NL]));
    const rec = formatExtRecord({ level: this.o.level ?? 6, facility: this.o.facility ?? 1, seq: this.seq++, usec, text });
    return this.ext(rec);
  }

  /**
   * A /dev/kmsg record: extended targets get it verbatim (same bytes the kernel hands netconsole), basic ones the
   * console line `[%5lu.%06lu] text\n` (printk's print_time).
   */
  kmsg(raw: Buffer, usec: number, text: Uint8Array): Buffer[] {
    if (this.o.extended) return this.ext(raw);
    const sec = Math.floor(usec / 1e6);
    const frac = String(usec % 1e6).padStart(6, '0');
    return basicDatagrams(Buffer.concat([Buffer.from(`[${String(sec).padStart(5)}.${frac}] `), text, NL]));
  }

  private ext(rec: Buffer): Buffer[] {
    const s = this.o.sysdata;
    let extradata: Buffer | undefined;
    if (this.o.userdata?.length || s) {
      extradata = formatExtradata(this.o.userdata, s ? {
        cpu: s.cpu ? s.cpu() : undefined, taskname: s.taskname, release: s.release,
        msgid: s.msgid ? (this.msgid = (this.msgid + 1) >>> 0) : undefined,
      } : {});
    }
    return extendedDatagrams(rec, { release: this.o.release, extradata });
  }
}

const NL = Buffer.from('\n');

// ---------------------------------------------------------------------------------------------------------------
// A whole extended message, parsed into its parts: the receiving half of formatExtRecord + formatExtradata +
// extendedDatagrams' release prefix (what a receiver holds after ncfrag reassembly, or one unfragmented datagram).
//
// Wire form (drivers/net/netconsole.c, 6.9-6.17: send_msg_no_fragmentation; Documentation/networking/netconsole.rst):
//   [<release>,]<prio>,<seq>,<usec>,<flag>[,<more header>];<escaped text>\n
//   [ SUBSYSTEM=<escaped>\n][ DEVICE=<escaped>\n]       printk's dev_printk_info (msg_print_ext_body)
//   [ <key>=<value>\n]…                                 configfs userdata, in its order, not escaped (6.9+)
//   [ cpu=<n>\n][ taskname=<comm>\n][ release=<uname -r>\n][ msgid=<u32>\n]   sysdata, this order (6.14+:
//                                                       cpu 6.14, taskname 6.15, release 6.15, msgid 6.16)
// Fragmented (send_msg_fragmented / send_fragmented_body), the release prefix stays in every piece's header and the
// ncfrag data is body + userdata + sysdata (ncfrag total = their sum, every piece filled up to 1000 bytes, the
// extradata starting in the piece where the body ends), so a receiver that reassembles by offset gets these same
// bytes back. Earlier versions kept userdata and sysdata in one "extradata" buffer (extradata_complete), later ones
// apart (nt->userdata, nt->sysdata) and copy body, userdata, sysdata in turn: the bytes and offsets are the same.
//
// What is userdata and what sysdata is not marked on the wire: sysdata is the last run of lines whose keys are
// cpu/taskname/release/msgid in the kernel's order with values of their form; SUBSYSTEM/DEVICE lines right after the
// text are the dictionary; everything between is userdata. (A userdata entry named like a sysdata field, last, would
// read as sysdata: the kernel does not forbid the name.)

/** The sysdata fields, in the order the kernel appends them (prepare_sysdata). */
export const SYSDATA_KEYS = ['cpu', 'taskname', 'release', 'msgid'] as const;
const DICT_KEYS = ['SUBSYSTEM', 'DEVICE'];
/** TASK_COMM_LEN - 1: the longest task name the kernel prints. */
const MAX_COMM = 15;

export interface ExtMessage {
  /** The 'r' prefix: the sender's kernel release, or null. */
  release: string | null;
  facility: number; level: number; seq: number; usec: number; cont: boolean;
  /** Header fields after the flag, e.g. `caller=T123` (never ncfrag). */
  headerExtra: string[];
  /** The message text, unescaped (printk's \xNN undone). */
  text: Buffer;
  /** SUBSYSTEM / DEVICE, unescaped. */
  dict: Array<[string, string]>;
  userdata: Array<[string, string]>;
  sysdata: Sysdata;
  /** Bytes after the text that are not ` KEY=value\n` lines (a foreign sender), kept verbatim; usually empty. */
  rest: Buffer;
}

function sysdataValueOk(k: string, v: string): boolean {
  if (k === 'cpu' || k === 'msgid') return /^\d{1,10}$/.test(v) && Number(v) <= 0xffffffff;
  if (k === 'taskname') return v.length <= MAX_COMM;
  return v.length > 0 && !/\s/.test(v);   // release: uname -r
}

/**
 * One whole extended message (no ncfrag field) into its parts, or null if it is not one. Inverse of emitExtMessage
 * for everything emitExtMessage makes.
 */
export function parseExtMessage(b: Uint8Array): ExtMessage | null {
  const dg = parseExtDatagram(b);
  if (!dg || dg.frag) return null;
  const body = dg.body;
  const nl = body.indexOf(0x0a);
  const text = unescapeExtText(nl < 0 ? body : body.subarray(0, nl));
  const lines: Array<[string, string]> = [];
  let pos = nl < 0 ? body.length : nl + 1;
  // ` KEY=value\n` lines, as far as they go.
  while (pos < body.length && body[pos] === 0x20) {
    const end = body.indexOf(0x0a, pos);
    const eq = body.indexOf(0x3d, pos);
    if (end < 0 || eq < 0 || eq > end || eq === pos + 1) break;
    lines.push([body.toString('utf8', pos + 1, eq), body.toString('utf8', eq + 1, end)]);
    pos = end + 1;
  }
  // sysdata: the trailing run in kernel order.
  let s = lines.length;
  let next: number = SYSDATA_KEYS.length;   // keys before this index may still come (walking backwards)
  while (s > 0) {
    const [k, v] = lines[s - 1];
    const i = (SYSDATA_KEYS as readonly string[]).indexOf(k);
    if (i < 0 || i >= next || !sysdataValueOk(k, v)) break;
    next = i;
    s--;
  }
  const sysdata: Sysdata = {};
  for (const [k, v] of lines.slice(s)) {
    if (k === 'cpu') sysdata.cpu = Number(v);
    else if (k === 'msgid') sysdata.msgid = Number(v);
    else if (k === 'taskname') sysdata.taskname = v;
    else sysdata.release = v;
  }
  let d = 0;
  while (d < s && d < DICT_KEYS.length && lines[d][0] === DICT_KEYS[d]) d++;
  // A DEVICE line alone (no SUBSYSTEM) is printk's too.
  if (d === 0 && s > 0 && lines[0][0] === 'DEVICE') d = 1;
  const dict = lines.slice(0, d).map(([k, v]) => [k, unescapeExtText(Buffer.from(v, 'utf8')).toString('utf8')] as [string, string]);
  return {
    release: dg.release, facility: dg.facility, level: dg.level, seq: dg.seq, usec: dg.usec, cont: dg.cont,
    headerExtra: dg.extra, text, dict, userdata: lines.slice(d, s), sysdata, rest: body.subarray(pos),
  };
}

/** The message as the kernel sends it unfragmented: release prefix, record, dictionary, userdata, sysdata. */
export function emitExtMessage(m: ExtMessage): Buffer {
  const prio = (m.facility << 3) | m.level;
  const head = [m.release !== null ? m.release : null, prio, m.seq, Math.floor(m.usec), m.cont ? 'c' : '-', ...m.headerExtra]
    .filter((x) => x !== null).join(',');
  const parts: Buffer[] = [Buffer.from(head + ';', 'latin1'), escapeExtText(m.text, '\n')];
  for (const [k, v] of m.dict) parts.push(Buffer.from(' '), escapeExtText(k, '='), escapeExtText(v, '\n'));
  parts.push(formatExtradata(m.userdata, m.sysdata), m.rest);
  return Buffer.concat(parts);
}
