import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Cap as CapT } from 'cap';
import { networkInterfaces } from 'node:os';
import { RuntimeError } from '../errors.js';
import { withStderrMuted } from './native.js';

const require = createRequire(import.meta.url);

/** Large enough for a jumbo frame; libpcap copies each captured frame here before the 'packet' event. */
const RX_BUF_LEN = 65536;
const SEND_RETRY_LIMIT_MS = 2000;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const CAP_NET_RAW = 13;
/**
 * cap's handles must never be garbage-collected: after close() its uv_poll handle is stopped but never uv_close'd, and
 * a handle whose pcap_activate failed is half set up — either way its destructor crashes the process (uv_poll_stop
 * assertion, or a segfault in EmitDestroy). So every Cap object we create stays referenced here for the process's life
 * (a few hundred bytes each; rawpoll opens a handful), and we check what we can before calling open at all.
 */
const retiredHandles: unknown[] = [];

function hasIpv4Address(iface: string): boolean {
  return (networkInterfaces()[iface] ?? []).some((a) => a.family === 'IPv4');
}

function hasNetRaw(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? (BigInt('0x' + m[1]) >> BigInt(CAP_NET_RAW)) % 2n === 1n : true;
  } catch {
    return true; // not Linux /proc: let libpcap say
  }
}

export type FrameHandler = (frame: Buffer) => void;

/** One libpcap handle (npm `cap`) on one interface: injection with pcap_sendpacket and a BPF-filtered receive side. */
export class PcapLink {
  readonly iface: string;
  /** Kept on the object: cap writes every captured frame into it, so it must live as long as the handle. */
  private readonly rxBuf = Buffer.alloc(RX_BUF_LEN);
  private readonly cap: CapT;
  private readonly handlers: FrameHandler[] = [];
  private closed = false;
  /** How many sends had to wait for the kernel queue (EAGAIN/ENOBUFS) before going through. */
  sendRetries = 0;

  private constructor(iface: string, cap: CapT) {
    this.iface = iface;
    this.cap = cap;
  }

  /** Opens IF for capture and injection. `filter` is a BPF expression for what we want to receive. */
  static open(iface: string, filter = 'arp', bufferBytes = 4 << 20): PcapLink {
    let CapCtor: typeof CapT;
    try {
      CapCtor = require('cap').Cap;
    } catch (e) {
      throw new RuntimeError(`the libpcap binding (npm cap) is not built: ${(e as Error).message}; run "npm ci" with libpcap-dev installed`);
    }
    if (!hasNetRaw()) {
      throw new RuntimeError(explainOpenError(iface, 'this process lacks CAP_NET_RAW'));
    }
    if (existsSync('/sys/class/net') && !existsSync(`/sys/class/net/${iface}`)) {
      throw new RuntimeError(explainOpenError(iface, 'No such device'));
    }
    const cap = new CapCtor();
    retiredHandles.push(cap);
    const link = new PcapLink(iface, cap);
    try {
      // With no IPv4 address on the link cap prints libpcap's netmask warning to fd 2: expected here, so muted.
      const open = () => cap.open(iface, filter, bufferBytes, link.rxBuf);
      const linktype = hasIpv4Address(iface) ? open() : withStderrMuted(open);
      if (linktype !== 'ETHERNET') {
        cap.close();
        throw new RuntimeError(`${iface} is not an Ethernet link (libpcap says ${linktype}); rawpoll builds Ethernet frames`);
      }
    } catch (e) {
      if (e instanceof RuntimeError) throw e;
      throw new RuntimeError(explainOpenError(iface, (e as Error).message));
    }
    cap.on('packet', (nbytes: number) => {
      const frame = link.rxBuf.subarray(0, nbytes);
      for (const h of link.handlers) h(frame);
    });
    return link;
  }

  /** Called for every captured frame; the Buffer is a view into the receive buffer, valid only during the call. */
  onFrame(h: FrameHandler): () => void {
    this.handlers.push(h);
    return () => {
      const i = this.handlers.indexOf(h);
      if (i >= 0) this.handlers.splice(i, 1);
    };
  }

  /**
   * pcap_sendpacket. cap puts the handle in non-blocking mode, so a full device queue answers EAGAIN/ENOBUFS:
   * wait (a real sleep, not a spin) and try again — a frame is never dropped silently.
   */
  send(frame: Uint8Array): void {
    if (this.closed) throw new RuntimeError(`link ${this.iface} is closed`);
    const buf = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    let waitedMs = 0;
    let backoffMs = 0.05;
    for (;;) {
      try {
        this.cap.send(buf, buf.length);
        return;
      } catch (e) {
        const msg = (e as Error).message;
        if (!/temporarily unavailable|no buffer space|EAGAIN|ENOBUFS/i.test(msg)) {
          throw new RuntimeError(`send on ${this.iface} failed: ${msg}`);
        }
        if (waitedMs > SEND_RETRY_LIMIT_MS) {
          throw new RuntimeError(`send on ${this.iface}: the device queue stayed full for ${SEND_RETRY_LIMIT_MS} ms (${msg})`);
        }
        this.sendRetries++;
        Atomics.wait(sleepCell, 0, 0, backoffMs);
        waitedMs += backoffMs;
        backoffMs = Math.min(backoffMs * 2, 10);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.length = 0;
    try {
      this.cap.close();
    } catch {
      /* already closed by libpcap */
    }
  }
}

function explainOpenError(iface: string, msg: string): string {
  if (/permission|not permitted|EPERM|EACCES|CAP_NET_RAW/i.test(msg)) {
    return `no permission to open ${iface} for raw access (${msg}); run as root (sudo) or give node CAP_NET_RAW and CAP_NET_ADMIN`;
  }
  if (/No such device|doesn't exist|not exist/i.test(msg)) {
    return `no interface '${iface}' (${msg})`;
  }
  if (/not up|down/i.test(msg)) {
    return `interface ${iface} is down (${msg}); bring it up with: ip link set ${iface} up`;
  }
  return `cannot open ${iface} with libpcap: ${msg}`;
}
