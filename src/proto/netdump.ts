/**
 * FreeBSD netdump / debugnet wire format (PROTOCOLS.md §4). Pure codecs, no I/O.
 *
 * Sources: sys/netinet/netdump/netdump.h, sys/net/debugnet.{c,h}, sys/sys/kerneldump.h and the netdumpd daemon
 * (netdumpd.c, cap_herald.c). Every integer on the wire is big-endian ("dump byte order == network byte order").
 */

/** The server listens here for heralds. */
export const NETDUMP_PORT = 20023;
/** The client sends from and receives ACKs on this port; the server connect()s its per-client socket to it. */
export const NETDUMP_ACKPORT = 20024;

export const NETDUMP_HERALD = 1;
export const NETDUMP_FINISHED = 2;
export const NETDUMP_VMCORE = 3;
export const NETDUMP_KDH = 4;
export const NETDUMP_EKCD_KEY = 5;

export const NETDUMP_TYPE_NAMES: Record<number, string> = {
  [NETDUMP_HERALD]: 'HERALD',
  [NETDUMP_FINISHED]: 'FINISHED',
  [NETDUMP_VMCORE]: 'VMCORE',
  [NETDUMP_KDH]: 'KDH',
  [NETDUMP_EKCD_KEY]: 'EKCD_KEY',
};

export const NETDUMP_HDR_LEN = 24;
/** NETDUMP_DATASIZE: the server's receive buffer holds one header plus this much payload. */
export const NETDUMP_DATASIZE = 4096;
/** debugnet tracks ACKs of one send in a 64-bit mask: at most this many datagrams per round. */
export const DEBUGNET_MAX_IN_FLIGHT = 64;
/** debugnet_npolls (2000) × DELAY(500 µs): how long a round waits for its ACKs. */
export const DEBUGNET_ROUND_MS = 1000;
/** debugnet_nretries = 10 and the test is `retries++ > nretries`: 1 send + 11 retransmits. */
export const DEBUGNET_RETRIES = 11;
export const NETDUMP_ACK_LEN = 4;
/**
 * Most EKCD key bytes a client can send: netdump_start (netdump_client.c) copies the key into nd_buf
 * (MAXDUMPPGS × PAGE_SIZE = DFLTPHYS = 64 KiB) and sends it in one debugnet_send from offset 0, refusing a larger
 * one. The key itself is far smaller (struct kerneldumpkey: an IV and at most KERNELDUMP_ENCKEY_MAX_SIZE = 2048
 * bytes of RSA-encrypted key).
 */
export const NETDUMP_EKCD_KEY_MAX = 64 * 1024;

/** IP + UDP + netdump header in front of the dump bytes: 20 + 8 + 24. */
export const NETDUMP_OVERHEAD = 20 + 8 + NETDUMP_HDR_LEN;

/** Dump bytes per datagram, as debugnet_send bounds it: min(4096, MTU − IP − UDP − header); 1448 at MTU 1500. */
export function netdumpChunkSize(mtu: number): number {
  return Math.max(0, Math.min(NETDUMP_DATASIZE, mtu - NETDUMP_OVERHEAD));
}

/** struct netdump_msg_hdr. */
export interface NetdumpHeader {
  type: number;
  seqno: number;
  /** u64 on the wire; a dump offset below 2^53 is exact as a number. */
  offset: number;
  len: number;
  aux2: number;
}

export function writeNetdumpHeader(h: NetdumpHeader, buf: Uint8Array, off = 0): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length - off < NETDUMP_HDR_LEN) throw new RangeError(`netdump header needs ${NETDUMP_HDR_LEN} bytes`);
  v.setUint32(off, h.type >>> 0);
  v.setUint32(off + 4, h.seqno >>> 0);
  v.setBigUint64(off + 8, BigInt(h.offset));
  v.setUint32(off + 16, h.len >>> 0);
  v.setUint32(off + 20, h.aux2 >>> 0);
}

/** Reads the 24-byte header; null if the buffer is a runt. Does not check len against the buffer (see validLength). */
/** A parsed header: `offset` as a number (exact below 2^53) and `offset64`, the exact u64 to decide on. */
export interface ParsedNetdumpHeader extends NetdumpHeader {
  /** mh_offset exactly: the Number rounds above 2^53 (2^63 + 1 -> 2^63), and a check on it let 2^63 land at 0. */
  offset64: bigint;
}

export function readNetdumpHeader(buf: Uint8Array, off = 0): ParsedNetdumpHeader | null {
  if (buf.length - off < NETDUMP_HDR_LEN) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const offset64 = v.getBigUint64(off + 8);
  return {
    type: v.getUint32(off),
    seqno: v.getUint32(off + 4),
    offset: Number(offset64),
    offset64,
    len: v.getUint32(off + 16),
    aux2: v.getUint32(off + 20),
  };
}

/** A whole message: header + payload in one new buffer (the client's hot path builds in place instead). */
export function encodeNetdumpMessage(h: Omit<NetdumpHeader, 'len'> & { len?: number }, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.alloc(NETDUMP_HDR_LEN + payload.length);
  writeNetdumpHeader({ ...h, len: h.len ?? payload.length }, b, 0);
  b.set(payload, NETDUMP_HDR_LEN);
  return b;
}

/** netdumpd's strict rule: received length − 24 must equal mh_len, else the datagram is dropped without an ACK. */
export function netdumpLengthOk(h: NetdumpHeader, datagramLen: number): boolean {
  return datagramLen - NETDUMP_HDR_LEN === h.len;
}

/** struct netdump_ack: just the seqno, big-endian. */
export function encodeAck(seqno: number, buf: Buffer = Buffer.alloc(NETDUMP_ACK_LEN)): Buffer {
  buf.writeUInt32BE(seqno >>> 0, 0);
  return buf;
}

/** debugnet only treats a UDP payload of exactly 4 bytes as an ACK. */
export function decodeAck(payload: Uint8Array): number | null {
  if (payload.length !== NETDUMP_ACK_LEN) return null;
  return ((payload[0] << 24) | (payload[1] << 16) | (payload[2] << 8) | payload[3]) >>> 0;
}

/** Herald payload: the server-side path with its NUL, or nothing (netdump_start: strlen + 1, or 0 if empty). */
export function heraldPayload(path?: string): Buffer {
  if (!path) return Buffer.alloc(0);
  return Buffer.concat([Buffer.from(path, 'utf8'), Buffer.from([0])]);
}

/** cap_herald.c accepts the path only if 0 < len <= min(MAXPATHLEN, 4096) and its last byte is NUL. */
export function heraldPath(payload: Uint8Array): string | null {
  const n = payload.length;
  if (n === 0 || n > 1024 || payload[n - 1] !== 0) return null;
  const s = Buffer.from(payload.buffer, payload.byteOffset, n - 1).toString('utf8');
  const nul = s.indexOf('\0');
  return nul >= 0 ? s.slice(0, nul) : s;
}

// ---- struct kerneldumpheader, version 4 (512 bytes) ----

export const KDH_LEN = 512;
export const KERNELDUMPMAGIC = 'FreeBSD Kernel Dump';
export const TEXTDUMPMAGIC = 'FreeBSD Text Dump';
export const KERNELDUMPVERSION = 4;
export const KERNELDUMP_AMD64_VERSION = 2;
export const KERNELDUMP_COMP_NONE = 0;
export const KERNELDUMP_COMP_GZIP = 1;
export const KERNELDUMP_COMP_ZSTD = 2;

/** Field offsets (kerneldump.h, version 4). */
export const KDH = {
  magic: [0, 20],
  architecture: [20, 12],
  version: 32,
  architectureversion: 36,
  dumplength: 40,
  dumptime: 48,
  dumpkeysize: 56,
  blocksize: 60,
  hostname: [64, 64],
  versionstring: [128, 192],
  panicstring: [320, 175],
  compression: 495,
  dumpextent: 496,
  unused: 504,
  parity: 508,
} as const;

export interface KernelDumpHeader {
  magic: string;
  architecture: string;
  version: number;
  architectureversion: number;
  dumplength: bigint;
  /** Seconds since the epoch. */
  dumptime: bigint;
  dumpkeysize: number;
  blocksize: number;
  hostname: string;
  versionstring: string;
  panicstring: string;
  compression: number;
  dumpextent: bigint;
  parity: number;
}

/** kerneldump_parity(): XOR of the header's 128 32-bit words. Byte order does not matter for XOR, as long as it is one. */
export function kdhParity(buf: Uint8Array, off = 0): number {
  if (!Number.isInteger(off) || off < 0 || buf.length - off < KDH_LEN) {
    throw new RangeError(`kdhParity: a kernel dump header is ${KDH_LEN} bytes, got ${buf.length - off} (buffer of ${buf.length} at offset ${off})`);
  }
  const v = new DataView(buf.buffer, buf.byteOffset + off, KDH_LEN);
  let p = 0;
  for (let i = 0; i < KDH_LEN; i += 4) p ^= v.getUint32(i);
  return p >>> 0;
}

/**
 * strlcpy into a fixed char[] field: at most size − 1 bytes, the rest zero, always NUL-terminated. A cut never
 * splits a UTF-8 character (a reader would show U+FFFD): it backs up over continuation bytes (10xxxxxx).
 */
function putString(b: Buffer, [off, size]: readonly [number, number], s: string): void {
  b.fill(0, off, off + size);
  const bytes = Buffer.from(s, 'utf8');
  let n = Math.min(bytes.length, size - 1);
  if (n < bytes.length) while (n > 0 && (bytes[n] & 0xc0) === 0x80) n--;
  bytes.copy(b, off, 0, n);
}

function getString(b: Uint8Array, [off, size]: readonly [number, number]): string {
  const f = Buffer.from(b.buffer, b.byteOffset + off, size);
  const nul = f.indexOf(0);
  return f.subarray(0, nul < 0 ? size : nul).toString('utf8');
}

export interface KdhInput {
  dumplength: number | bigint;
  dumptime?: number | bigint;
  hostname: string;
  versionstring: string;
  panicstring?: string;
  architecture?: string;
  architectureversion?: number;
  blocksize?: number;
  magic?: string;
  compression?: number;
}

/**
 * mkdumpheader(): what the kernel fills in. dumpextent = dumplength (no compression), parity last so that the XOR
 * of all words is zero.
 */
export function buildKdh(k: KdhInput): Buffer {
  const b = Buffer.alloc(KDH_LEN);
  putString(b, KDH.magic, k.magic ?? KERNELDUMPMAGIC);
  putString(b, KDH.architecture, k.architecture ?? 'amd64');
  b.writeUInt32BE(KERNELDUMPVERSION, KDH.version);
  b.writeUInt32BE(k.architectureversion ?? KERNELDUMP_AMD64_VERSION, KDH.architectureversion);
  b.writeBigUInt64BE(BigInt(k.dumplength), KDH.dumplength);
  b.writeBigUInt64BE(BigInt(k.dumptime ?? Math.floor(Date.now() / 1000)), KDH.dumptime);
  b.writeUInt32BE(0, KDH.dumpkeysize);
  b.writeUInt32BE(k.blocksize ?? 4096, KDH.blocksize);
  putString(b, KDH.hostname, k.hostname);
  putString(b, KDH.versionstring, k.versionstring);
  putString(b, KDH.panicstring, k.panicstring ?? '');
  b[KDH.compression] = k.compression ?? KERNELDUMP_COMP_NONE;
  b.writeBigUInt64BE(BigInt(k.dumplength), KDH.dumpextent);
  b.writeUInt32BE(kdhParity(b), KDH.parity);
  return b;
}

/** Decodes a KDH; null if shorter than 512 bytes. Strings stop at the first NUL or the field's end. */
export function parseKdh(buf: Uint8Array): (KernelDumpHeader & { parityOk: boolean }) | null {
  if (buf.length < KDH_LEN) return null;
  const b = Buffer.from(buf.buffer, buf.byteOffset, KDH_LEN);
  return {
    magic: getString(b, KDH.magic),
    architecture: getString(b, KDH.architecture),
    version: b.readUInt32BE(KDH.version),
    architectureversion: b.readUInt32BE(KDH.architectureversion),
    dumplength: b.readBigUInt64BE(KDH.dumplength),
    dumptime: b.readBigUInt64BE(KDH.dumptime),
    dumpkeysize: b.readUInt32BE(KDH.dumpkeysize),
    blocksize: b.readUInt32BE(KDH.blocksize),
    hostname: getString(b, KDH.hostname),
    versionstring: getString(b, KDH.versionstring),
    panicstring: getString(b, KDH.panicstring),
    compression: b[KDH.compression],
    dumpextent: b.readBigUInt64BE(KDH.dumpextent),
    parity: b.readUInt32BE(KDH.parity),
    parityOk: kdhParity(b) === 0,
  };
}

const COMPRESSION_NAMES = ['none', 'gzip', 'zstd'];

/** The lines netdumpd's handle_kdh() appends to info.<host>.<n>, same labels so existing tooling keeps working. */
export function formatKdhInfo(k: KernelDumpHeader & { parityOk: boolean }): string {
  const len = k.dumplength;
  // ctime(3) style: "Sat Nov 21 23:57:41 2026"
  const d = new Date(Number(k.dumptime) * 1000);
  const ctime = d.toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, (_m, wd, day, mon, yr, t) =>
    `${wd} ${mon} ${String(day).padStart(2, ' ')} ${t} ${yr}`);
  const lines = [
    `  Architecture: ${k.architecture}`,
    `  Architecture Version: ${k.architectureversion}`,
    `  Dump Length: ${len}B (${len >> 20n} MB)`,
    `  Blocksize: ${k.blocksize}`,
  ];
  if (k.version >= 3) lines.push(`  Compression: ${COMPRESSION_NAMES[k.compression] ?? '???'}`);
  lines.push(
    `  Dumptime: ${ctime} UTC`,
    `  Hostname: ${k.hostname}`,
    // The kernel's version string ends in a newline; netdumpd prints it without adding one.
    `  Version String: ${k.versionstring.replace(/\n+$/, '')}`,
    `  Panic String: ${k.panicstring}`,
    `  Header Parity Check: ${k.parityOk ? 'Pass' : 'Fail'}`,
  );
  return lines.join('\n') + '\n';
}
