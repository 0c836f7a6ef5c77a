import { closeSync, fstatSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { RuntimeError } from '../errors.js';
import { emitPcapGlobalHeader, emitPcapRecordHeader, PCAP_RECORD_LEN } from '../wire/pcapfile.js';
import type { Link } from './link.js';

/** libpcap's magic for nanosecond timestamps (pcap-common: TCPDUMP_MAGIC 0xa1b2c3d4 is µs, NSEC_TCPDUMP_MAGIC ns). */
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;

export interface PcapFileOptions {
  /** Nanosecond timestamps (magic 0xa1b23c4d, tcpdump's --time-stamp-precision=nano); default µs. */
  nano?: boolean;
}

/** How `-w PATH` is written, decided before anything is created (tcpdump's rules). */
export type PcapTarget =
  | { kind: 'stdout' }
  /** A FIFO, character or block device, or socket: opened and written into, never replaced. */
  | { kind: 'special'; path: string }
  /** A regular file, existing or not: written to a temp name beside it, renamed over it on close. */
  | { kind: 'file'; path: string };

/**
 * Where `-w PATH` goes, refused (RuntimeError naming PATH) before anything is created: a directory, or a missing
 * parent directory. A symlink is followed, so `-w link` replaces the file it points to, not the link.
 */
export function pcapTarget(path: string): PcapTarget {
  if (path === '-') return { kind: 'stdout' };
  if (path === '') throw new RuntimeError("cannot write pcap file '': give a file name, or - for standard output");
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new RuntimeError(`cannot write ${path}: ${(e as Error).message}`);
    // A new file: its directory must exist (and be one) now, not at the rename.
    const dir = dirname(path);
    let d;
    try {
      d = statSync(dir);
    } catch (e2) {
      throw new RuntimeError(`cannot write ${path}: directory ${dir} does not exist (${(e2 as NodeJS.ErrnoException).code})`);
    }
    if (!d.isDirectory()) throw new RuntimeError(`cannot write ${path}: ${dir} is not a directory`);
    return { kind: 'file', path };
  }
  if (st.isDirectory()) throw new RuntimeError(`cannot write ${path}: it is a directory; give a file name, a FIFO or a device, or - for standard output`);
  if (st.isFile()) return { kind: 'file', path: realpathSync(path) };
  return { kind: 'special', path };
}

/**
 * `-w PATH`: frames go to a classic pcap file instead of a NIC, as tcpdump -w writes: `-` is standard output, a FIFO
 * or device is written into (never replaced: `-w /dev/null` must not turn the system's /dev/null into a file), a
 * directory is refused before anything is created. A regular file is written to PATH.tmp-PID beside it and renamed
 * into place on close, so an interrupted run never leaves a half file under the real name. A Link with no receive
 * side: a sender writes to it as to a NIC.
 */
export class PcapFileWriter implements Link {
  readonly path: string;
  readonly target: PcapTarget;
  readonly nano: boolean;
  private readonly tmp: string | null;
  private fd: number;
  private readonly chunk = Buffer.alloc(1 << 20);
  private used = 0;
  private readonly rec = Buffer.alloc(PCAP_RECORD_LEN);
  frames = 0;

  constructor(path: string, opts: PcapFileOptions = {}) {
    this.path = path;
    this.nano = !!opts.nano;
    this.target = pcapTarget(path);
    const t = this.target;
    this.tmp = t.kind === 'file' ? `${t.path}.tmp-${process.pid}` : null;
    if (t.kind === 'stdout') {
      this.fd = 1;
    } else {
      try {
        // A FIFO blocks here until a reader opens it, as in tcpdump.
        this.fd = openSync(this.tmp ?? t.path, 'w', 0o644);
      } catch (e) {
        throw new RuntimeError(`cannot write ${path}: ${(e as Error).message}`);
      }
      // Raced into a directory or other type since pcapTarget looked: the open says so for a directory; for a
      // regular file where a special one was, nothing was replaced either way.
      if (this.tmp === null && fstatSync(this.fd).isDirectory()) {
        closeSync(this.fd);
        throw new RuntimeError(`cannot write ${path}: it is a directory`);
      }
    }
    const h = emitPcapGlobalHeader();
    if (this.nano) h.writeUInt32LE(PCAP_MAGIC_NSEC, 0);
    this.append(h);
  }

  send(frame: Uint8Array): void {
    if (this.fd < 0) throw new RuntimeError(`pcap file ${this.path} is closed`);
    const ns = wallClockNs();
    const sec = Number(ns / 1_000_000_000n);
    const frac = Number(ns % 1_000_000_000n);
    this.append(emitPcapRecordHeader(sec, this.nano ? frac : Math.floor(frac / 1000), frame.length, frame.length, this.rec));
    this.append(frame);
    this.frames++;
  }

  /** send() for frames 0..n-1 of buf (frame i = buf[offsets[i], +lengths[i])); a file has no queue to fill. */
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): number {
    if (!(Number.isInteger(n) && n >= 0 && n <= offsets.length && n <= lengths.length)) {
      throw new RangeError(`sendBatch: n ${n} is not 0-${Math.min(offsets.length, lengths.length)} (the frames offsets and lengths describe)`);
    }
    for (let i = 0; i < n; i++) {
      if (offsets[i] + lengths[i] > buf.length) throw new RangeError(`sendBatch: frame ${i} lies outside the buffer`);
    }
    for (let i = 0; i < n; i++) this.send(buf.subarray(offsets[i], offsets[i] + lengths[i]));
    return n;
  }

  private append(b: Uint8Array): void {
    if (this.used + b.length > this.chunk.length) this.flush();
    if (b.length > this.chunk.length) {
      writeAll(this.fd, b, b.length);
      return;
    }
    this.chunk.set(b, this.used);
    this.used += b.length;
  }

  private flush(fd = this.fd): void {
    if (this.used) writeAll(fd, this.chunk, this.used);
    this.used = 0;
  }

  /** Finish the file: flush, and for a regular file move it into place. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      this.flush(fd);
      if (this.tmp !== null) fsyncSync(fd);
    } catch (e) {
      this.release(fd);
      throw new RuntimeError(`cannot write ${this.path}: ${(e as Error).message}`);
    }
    if (this.target.kind !== 'stdout') closeSync(fd);
    if (this.tmp !== null) renameSync(this.tmp, (this.target as { path: string }).path);
  }

  /** Give up: a temporary file is removed, leaving nothing behind; stdout, a FIFO or a device just stop. */
  abort(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.release(fd);
  }

  private release(fd: number): void {
    if (this.target.kind !== 'stdout') closeSync(fd);
    if (this.tmp === null) return;
    try {
      unlinkSync(this.tmp);
    } catch {
      /* gone already */
    }
  }
}

/** The wall clock at process start, in ns; records add the monotonic clock to it, so their times never go back. */
const ORIGIN_NS = BigInt(Math.round(performance.timeOrigin * 1e6)) - process.hrtime.bigint() + BigInt(Math.round(performance.now() * 1e6));

function wallClockNs(): bigint {
  return ORIGIN_NS + process.hrtime.bigint();
}

/** writeSync until all of buf[0, len) is out: a pipe on stdout may be non-blocking (EAGAIN) or take part of it. */
function writeAll(fd: number, buf: Uint8Array, len: number): void {
  let off = 0;
  while (off < len) {
    try {
      off += writeSync(fd, buf, off, len - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // the reader is behind: wait 1 ms
    }
  }
}
