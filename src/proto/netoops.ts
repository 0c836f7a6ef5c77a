/**
 * netoops: Google's structured crash report over UDP (never merged upstream; PROTOCOLS.md §3 and the
 * drivers/net/netoops.c patch series by Mike Waychison, 2010-2011). No I/O here: encode and decode only.
 *
 * Version 3 datagram, all integers little-endian, every datagram the same size:
 *   0 version u16 (=3)       2 dump_id u16 (seconds since boot & 0xffff)   4 data_offset u16   6 arch u16
 *   8 arch_offset u16       10 type u16 (1 oops/panic, 3 soft)            12 packet_count u32
 *  16 packet_no u32         20 boot_id u32                                24 kernel_version char[64]
 *  88 user_blob char[128] (the newest variant; rawpoll puts `board=…\nfirmware=…\n` there)
 * 216 arch data (arch 2: vendor, family, model, stepping u8, then x86-64 struct pt_regs, 168 bytes; zero from user space)
 * 388 data[1024] (the last chunk zero-padded)                           -> 1412 bytes of UDP payload
 * A receiver must honour data_offset/arch_offset: v3 without the user blob puts arch data at 88.
 *
 * Version 2 (the v1 patch) after packet_no: boot id u32 @20, x86 family/model/stepping u8 @24..26,
 * kernel_version[64] @27, bios_version[64] @91, motherboard_type[64] @155 (SMBIOS strings), registers from 219.
 *
 * Numbering (netoops_send_segment): packet_no 0 is the NEWEST 1024 bytes (the tail of the log) and goes out first;
 * packet_no packet_count-1 is the oldest. Reassembly writes packet_no packet_count-1 … 0.
 */

export const NETOOPS_PORT = 2004;
export const NETOOPS_DATA_BYTES = 1024;
export const NETOOPS_RETRANSMIT_COUNT = 3;
export const NETOOPS_TYPE_OOPS = 1;
export const NETOOPS_TYPE_SOFT = 3;
/** arch 2 is the patch's x86/x86-64 code. rawpoll sends 0 ("other", no arch data) from any other machine. */
export const NETOOPS_ARCH_X86 = 2;
export const NETOOPS_ARCH_OTHER = 0;
export const X86_64_PT_REGS_LEN = 168; // sizeof(struct pt_regs) on x86-64 (60 on i386)

export const V3_FIXED_LEN = 24;
export const KERNEL_VERSION_LEN = 64;
export const USER_BLOB_OFFSET = 88;
export const USER_BLOB_LEN = 128;
export const V3_ARCH_OFFSET = USER_BLOB_OFFSET + USER_BLOB_LEN; // 216
const V2_KERNEL_OFFSET = 27;
const V2_BIOS_OFFSET = 91;
const V2_BOARD_OFFSET = 155;
const V2_REGS_OFFSET = 219;
const X86_CPUID_LEN = 4;

export interface NetoopsX86 {
  /** Linux X86_VENDOR_* code (0 Intel, 2 AMD, 9 Hygon, …; 0xff unknown). v2 carries no vendor: null. */
  vendor: number | null;
  family: number;
  model: number;
  stepping: number;
  /** Saved registers (struct pt_regs); rawpoll sends zeros: a user-space sender has no trap frame. */
  regs: Buffer;
}

export interface NetoopsRepr {
  version: 2 | 3;
  dumpId: number;
  arch: number;
  type: number;
  packetCount: number;
  packetNo: number;
  bootId: number;
  kernelVersion: string;
  /** v3 only, 128 bytes when present (null when arch_offset leaves no room for it). */
  userBlob: Buffer | null;
  /** v2 only: SMBIOS strings. */
  biosVersion?: string;
  boardName?: string;
  x86: NetoopsX86 | null;
  /** As found on the wire (parse) or as laid out (emit). */
  dataOffset: number;
  archOffset: number;
}

export type NetoopsParse =
  | { ok: true; repr: NetoopsRepr; data: Buffer }
  | { ok: false; reason: 'truncated' | 'version' | 'offsets' | 'packet_no'; detail: string };

/** Header fields a sender fixes once per dump (packet_no and data change per datagram). */
export interface NetoopsDumpHeader {
  version?: 2 | 3; // default 3
  dumpId: number;
  type: number;
  bootId: number;
  kernelVersion: string;
  arch: number;
  x86?: { vendor: number; family: number; model: number; stepping: number; regs?: Uint8Array };
  /** v3: up to 128 bytes, NUL-padded. */
  userBlob?: Uint8Array;
  /** v2: SMBIOS strings. */
  biosVersion?: string;
  boardName?: string;
}

function fixedString(buf: Buffer, start: number, end: number): string {
  const s = buf.subarray(start, end);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString('latin1');
}

/** Layout of one dump's datagrams: where the arch data and the data start, total size. */
export function netoopsLayout(h: Pick<NetoopsDumpHeader, 'version' | 'arch'>): { archOffset: number; dataOffset: number; size: number } {
  const archLen = h.arch === NETOOPS_ARCH_X86 ? X86_CPUID_LEN + X86_64_PT_REGS_LEN : 0;
  if ((h.version ?? 3) === 2) {
    // v2 keeps family/model/stepping in the fixed part; its arch area holds only the registers.
    const regs = h.arch === NETOOPS_ARCH_X86 ? X86_64_PT_REGS_LEN : 0;
    return { archOffset: V2_REGS_OFFSET, dataOffset: V2_REGS_OFFSET + regs, size: V2_REGS_OFFSET + regs + NETOOPS_DATA_BYTES };
  }
  return { archOffset: V3_ARCH_OFFSET, dataOffset: V3_ARCH_OFFSET + archLen, size: V3_ARCH_OFFSET + archLen + NETOOPS_DATA_BYTES };
}

/**
 * Builds the datagrams of one dump in one reusable buffer, like netoops' static `msg`: the header is written once,
 * `datagram()` patches packet_no and the data area in place. The returned Buffer is valid until the next call.
 */
export class NetoopsEncoder {
  readonly buf: Buffer;
  readonly dataOffset: number;
  readonly archOffset: number;
  readonly packetCount: number;
  private readonly log: Uint8Array;

  constructor(h: NetoopsDumpHeader, log: Uint8Array) {
    const version = h.version ?? 3;
    const lay = netoopsLayout(h);
    this.dataOffset = lay.dataOffset;
    this.archOffset = lay.archOffset;
    this.log = log;
    this.packetCount = Math.ceil(log.length / NETOOPS_DATA_BYTES);
    const b = Buffer.alloc(lay.size);
    b.writeUInt16LE(version, 0);
    b.writeUInt16LE(h.dumpId & 0xffff, 2);
    b.writeUInt16LE(lay.dataOffset, 4);
    b.writeUInt16LE(h.arch & 0xffff, 6);
    b.writeUInt16LE(lay.archOffset, 8);
    b.writeUInt16LE(h.type & 0xffff, 10);
    b.writeUInt32LE(this.packetCount >>> 0, 12);
    b.writeUInt32LE(h.bootId >>> 0, 20);
    const x = h.arch === NETOOPS_ARCH_X86 ? h.x86 : undefined;
    if (version === 3) {
      // strncpy semantics: not necessarily NUL-terminated when the release fills all 64 bytes.
      b.write(h.kernelVersion, V3_FIXED_LEN, KERNEL_VERSION_LEN, 'latin1');
      if (h.userBlob) Buffer.from(h.userBlob.subarray(0, USER_BLOB_LEN)).copy(b, USER_BLOB_OFFSET);
      if (x) {
        b[lay.archOffset] = x.vendor & 0xff;
        b[lay.archOffset + 1] = x.family & 0xff;
        b[lay.archOffset + 2] = x.model & 0xff;
        b[lay.archOffset + 3] = x.stepping & 0xff;
        if (x.regs) Buffer.from(x.regs.subarray(0, X86_64_PT_REGS_LEN)).copy(b, lay.archOffset + X86_CPUID_LEN);
      }
    } else {
      if (x) {
        b[24] = x.family & 0xff;
        b[25] = x.model & 0xff;
        b[26] = x.stepping & 0xff;
        if (x.regs) Buffer.from(x.regs.subarray(0, X86_64_PT_REGS_LEN)).copy(b, lay.archOffset);
      }
      b.write(h.kernelVersion, V2_KERNEL_OFFSET, KERNEL_VERSION_LEN, 'latin1');
      b.write(h.biosVersion ?? '', V2_BIOS_OFFSET, KERNEL_VERSION_LEN, 'latin1');
      b.write(h.boardName ?? '', V2_BOARD_OFFSET, KERNEL_VERSION_LEN, 'latin1');
    }
    this.buf = b;
  }

  /** Log byte range carried by packet_no k: k = 0 is the tail (newest bytes). */
  chunkRange(packetNo: number): { start: number; end: number } {
    const index = this.packetCount - 1 - packetNo;
    const start = index * NETOOPS_DATA_BYTES;
    return { start, end: Math.min(this.log.length, start + NETOOPS_DATA_BYTES) };
  }

  /** The complete datagram for packet_no; the tail chunk is zero-padded to 1024 bytes. */
  datagram(packetNo: number): Buffer {
    if (!(Number.isInteger(packetNo) && packetNo >= 0 && packetNo < this.packetCount)) {
      throw new RangeError(`packet_no ${packetNo} outside 0-${this.packetCount - 1}`);
    }
    const { start, end } = this.chunkRange(packetNo);
    this.buf.writeUInt32LE(packetNo, 16);
    const n = Buffer.from(this.log.buffer, this.log.byteOffset + start, end - start).copy(this.buf, this.dataOffset);
    this.buf.fill(0, this.dataOffset + n, this.dataOffset + NETOOPS_DATA_BYTES);
    return this.buf;
  }

  /** Send order for one round: packet_no 0 (newest) first, as netoops_send_segment does. */
  *order(): Generator<number> {
    for (let k = 0; k < this.packetCount; k++) yield k;
  }
}

/**
 * Decodes one datagram. Checks every length before reading; a failure names the reason so a collector can count
 * drops by kind. `data` is a view into `buf` (copy what you keep).
 */
export function parseNetoops(buf: Buffer): NetoopsParse {
  if (buf.length < V3_FIXED_LEN) return { ok: false, reason: 'truncated', detail: `${buf.length} bytes, header needs ${V3_FIXED_LEN}` };
  const version = buf.readUInt16LE(0);
  if (version !== 2 && version !== 3) return { ok: false, reason: 'version', detail: `version ${version}, expected 2 or 3` };
  const dataOffset = buf.readUInt16LE(4);
  const archOffset = buf.readUInt16LE(8);
  const minArch = version === 3 ? V3_FIXED_LEN : V2_BOARD_OFFSET + KERNEL_VERSION_LEN;
  if (archOffset < minArch || dataOffset < archOffset) {
    return { ok: false, reason: 'offsets', detail: `arch_offset ${archOffset} data_offset ${dataOffset} (need ${minArch} <= arch_offset <= data_offset)` };
  }
  if (buf.length < dataOffset + NETOOPS_DATA_BYTES) {
    return { ok: false, reason: 'truncated', detail: `${buf.length} bytes, data_offset ${dataOffset} + ${NETOOPS_DATA_BYTES} data bytes` };
  }
  const packetCount = buf.readUInt32LE(12);
  const packetNo = buf.readUInt32LE(16);
  if (packetCount === 0 || packetNo >= packetCount) {
    return { ok: false, reason: 'packet_no', detail: `packet_no ${packetNo} of packet_count ${packetCount}` };
  }
  const arch = buf.readUInt16LE(6);
  const repr: NetoopsRepr = {
    version,
    dumpId: buf.readUInt16LE(2),
    arch,
    type: buf.readUInt16LE(10),
    packetCount,
    packetNo,
    bootId: buf.readUInt32LE(20),
    kernelVersion: '',
    userBlob: null,
    x86: null,
    dataOffset,
    archOffset,
  };
  if (version === 3) {
    repr.kernelVersion = fixedString(buf, V3_FIXED_LEN, Math.min(USER_BLOB_OFFSET, archOffset));
    if (archOffset >= V3_ARCH_OFFSET) repr.userBlob = buf.subarray(USER_BLOB_OFFSET, V3_ARCH_OFFSET);
    if (arch === NETOOPS_ARCH_X86 && dataOffset - archOffset >= X86_CPUID_LEN) {
      repr.x86 = {
        vendor: buf[archOffset], family: buf[archOffset + 1], model: buf[archOffset + 2], stepping: buf[archOffset + 3],
        regs: buf.subarray(archOffset + X86_CPUID_LEN, dataOffset),
      };
    }
  } else {
    repr.kernelVersion = fixedString(buf, V2_KERNEL_OFFSET, V2_BIOS_OFFSET);
    repr.biosVersion = fixedString(buf, V2_BIOS_OFFSET, V2_BOARD_OFFSET);
    repr.boardName = fixedString(buf, V2_BOARD_OFFSET, V2_REGS_OFFSET);
    if (arch === NETOOPS_ARCH_X86) {
      repr.x86 = { vendor: null, family: buf[24], model: buf[25], stepping: buf[26], regs: buf.subarray(archOffset, dataOffset) };
    }
  }
  return { ok: true, repr, data: buf.subarray(dataOffset, dataOffset + NETOOPS_DATA_BYTES) };
}

/** rawpoll's user blob: `key=value\n` lines (board, firmware), NUL-padded to 128 bytes; too long is cut. */
export function encodeUserBlob(fields: Record<string, string | undefined>): Buffer {
  const text = Object.entries(fields)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${String(v).replace(/[\n\0]/g, ' ')}\n`)
    .join('');
  const b = Buffer.alloc(USER_BLOB_LEN);
  b.write(text, 0, USER_BLOB_LEN, 'latin1');
  return b;
}

/** Reads a user blob: the text up to the first NUL, and any `key=value` lines in it. */
export function decodeUserBlob(blob: Uint8Array): { text: string; fields: Record<string, string> } {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const nul = b.indexOf(0);
  const text = b.subarray(0, nul < 0 ? b.length : nul).toString('latin1');
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_.-]+)=(.*)$/.exec(line);
    if (m) fields[m[1]] = m[2];
  }
  return { text, fields };
}

export function netoopsTypeName(t: number): string {
  return t === NETOOPS_TYPE_OOPS ? 'oops' : t === NETOOPS_TYPE_SOFT ? 'soft' : `type${t}`;
}
