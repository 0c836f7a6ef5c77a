import { closeSync, openSync, renameSync, unlinkSync, writeSync, fsyncSync } from 'node:fs';
import { RuntimeError } from '../errors.js';
import { emitPcapGlobalHeader, emitPcapRecordHeader, PCAP_RECORD_LEN } from '../wire/pcapfile.js';
import type { Link } from './link.js';

/**
 * `-w FILE.pcap`: frames go to a classic pcap file instead of a NIC. Written to FILE.tmp-PID and renamed into place
 * on close, so an interrupted run never leaves a half file under the real name. A Link with no receive side: a
 * sender writes to it as to a NIC.
 */
export class PcapFileWriter implements Link {
  readonly path: string;
  private readonly tmp: string;
  private fd: number;
  private readonly chunk = Buffer.alloc(1 << 20);
  private used = 0;
  private readonly rec = Buffer.alloc(PCAP_RECORD_LEN);
  frames = 0;

  constructor(path: string) {
    this.path = path;
    this.tmp = `${path}.tmp-${process.pid}`;
    try {
      this.fd = openSync(this.tmp, 'w', 0o644);
    } catch (e) {
      throw new RuntimeError(`cannot write ${path}: ${(e as Error).message}`);
    }
    this.append(emitPcapGlobalHeader());
  }

  send(frame: Uint8Array): void {
    if (this.fd < 0) throw new RuntimeError(`pcap file ${this.path} is closed`);
    const now = Date.now();
    const usec = Number(process.hrtime.bigint() / 1000n % 1000n); // sub-ms part from the monotonic clock
    this.append(emitPcapRecordHeader(Math.floor(now / 1000), (now % 1000) * 1000 + usec, frame.length, frame.length, this.rec));
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
      writeSync(this.fd, b);
      return;
    }
    this.chunk.set(b, this.used);
    this.used += b.length;
  }

  private flush(): void {
    if (this.used) writeSync(this.fd, this.chunk, 0, this.used);
    this.used = 0;
  }

  /** Finish the file and move it into place. */
  close(): void {
    if (this.fd < 0) return;
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
    renameSync(this.tmp, this.path);
  }

  /** Give up: remove the temporary file, leave nothing behind. */
  abort(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.tmp);
    } catch {
      /* gone already */
    }
  }
}
