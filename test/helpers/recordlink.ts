/**
 * A Link (src/link/link.ts) that records the frames handed to it, for unit tests of senders without a NIC or root.
 * `fail(i)` may throw for the i-th send (0-based) — LinkDownError, LinkGoneError, … — as a real link would.
 */
import type { Link } from '../../src/link/link.js';
import { parseUdpFrame, type ParsedUdpFrame } from '../../src/wire/udpframe.js';

export class RecordingLink implements Link {
  readonly frames: Buffer[] = [];
  sends = 0;
  closed = false;

  constructor(private readonly fail: (i: number) => Error | null = () => null) {}

  send(frame: Uint8Array): void {
    if (this.closed) throw new Error('send on a closed RecordingLink');
    const e = this.fail(this.sends++);
    if (e) throw e;
    this.frames.push(Buffer.from(frame));
  }

  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): number {
    for (let i = 0; i < n; i++) {
      try {
        this.send(buf.subarray(offsets[i], offsets[i] + lengths[i]));
      } catch (e) {
        throw Object.assign(e as Error, { sent: i });
      }
    }
    return n;
  }

  close(): void {
    this.closed = true;
  }

  /** Every frame as parsed IPv4/UDP (a frame that is not one fails the test). */
  udp(): ParsedUdpFrame[] {
    return this.frames.map((f, i) => {
      const p = parseUdpFrame(f);
      if (!p) throw new Error(`frame ${i} is not an IPv4/UDP frame`);
      return p;
    });
  }
}
