/**
 * One libpcap handle on one interface through rawpoll's own binding (native/src/pcap.cc): injection with
 * pcap_inject, a BPF-filtered receive side delivered in batches, pcap_stats, timestamp type and precision.
 *
 * It rides out link outages (README, "When the link goes down"): libpcap reports a link taken down as an error on
 * the capture socket; the handle then pauses, and resumes when the link is back — the packet socket stays bound
 * through the outage (the kernel hooks it in again on NETDEV_UP), so frames that arrive before we notice are kept in
 * its ring, not lost. Any other receive error closes the handle and opens it again with the same filter and options —
 * unless the process gave up CAP_NET_RAW since (-Z): then the handle is kept and polled again.
 * Frame handlers stay registered throughout. While the link is down send() and sendBatch() throw
 * LinkDownError; once the interface is gone, LinkGoneError. Its LinkWatch (`watch`) emits 'down', 'up' and 'gone'.
 */
import { readFileSync } from 'node:fs';
import { LinkDownError, LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { loadAddon, type PcapHandle, type PcapStats } from './addon.js';
import type { FrameHandler, Link } from './link.js';
import { LinkWatch } from './watch.js';

// Defined with the Link interface; exported here too, where the blast engine and tests have always found them.
export { sentBeforeError, type BatchSendError, type FrameHandler } from './link.js';

const SEND_RETRY_LIMIT_MS = 2000;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const CAP_NET_RAW = 13;
const DLT_EN10MB = 1;
/** Most frames one receive batch holds (the data buffer may end a batch sooner). */
const BATCH_FRAMES = 4096;

function hasNetRaw(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? (BigInt('0x' + m[1]) >> BigInt(CAP_NET_RAW)) % 2n === 1n : true;
  } catch {
    return true; // not Linux /proc: let libpcap say
  }
}

export interface PcapLinkOptions {
  /** BPF expression for what to receive (default 'arp'). */
  filter?: string;
  /** Kernel capture ring in bytes (pcap_set_buffer_size). */
  bufferBytes?: number;
  /** Bytes kept of each frame (default 65535). */
  snaplen?: number;
  /** Promiscuous mode (default on, as tcpdump; off = only frames for this host, broadcast and multicast). */
  promisc?: boolean;
  /** Deliver each frame as it comes (default) or let the kernel fill blocks for up to timeoutMs (fewer wake-ups). */
  immediate?: boolean;
  timeoutMs?: number;
  /** pcap_set_tstamp_type: 'host', 'adapter', 'adapter_unsynced', … (pcapTimestampTypes(IF) lists them). */
  tstampType?: string;
  /** Nanosecond timestamps instead of microseconds. */
  nanosecond?: boolean;
}

/** What pcap_set_tstamp_type accepts on IF (libpcap's names). */
export function pcapTimestampTypes(iface: string): string[] {
  return loadAddon().pcapTstampTypes(iface);
}

export class PcapLink implements Link {
  readonly iface: string;
  readonly watch: LinkWatch;
  /** Timestamps handed to frame handlers are ns (true) or µs (false). */
  readonly nanosecond: boolean;
  private readonly opts: PcapLinkOptions & { filter: string };
  private readonly data: Buffer;
  private readonly meta = new Uint32Array(5 * BATCH_FRAMES);
  private handle: PcapHandle | null = null;
  /** The handle reported an outage and waits for the link (see onHandleError). */
  private paused = false;
  private readonly handlers: FrameHandler[] = [];
  private closed = false;
  /** Stats of the handles this link closed (outages reopen it): stats() adds the open one's. */
  private statsBefore: PcapStats = { received: 0, dropped: 0, ifdropped: 0 };
  private reopenTimer: NodeJS.Timeout | null = null;
  /** Set when the handle was lost and privileges to open another were given up (-Z): what send() then throws. */
  private reopenRefused: RuntimeError | null = null;
  /** How many sends had to wait for the kernel queue (EAGAIN/ENOBUFS) before going through. */
  sendRetries = 0;

  private constructor(iface: string, opts: PcapLinkOptions & { filter: string }) {
    this.iface = iface;
    this.opts = opts;
    this.data = Buffer.allocUnsafe((1 << 20) + (opts.snaplen ?? 65535));
    this.watch = new LinkWatch(iface);
    try {
      this.handle = this.openHandle();
    } catch (e) {
      this.watch.close(); // no watch timer outlives a link that never opened
      throw e;
    }
    this.nanosecond = this.handle.nanosecond;
    if (this.handle.linktype !== DLT_EN10MB) {
      const name = this.handle.linktypeName;
      this.close();
      throw new RuntimeError(`${iface} is not an Ethernet link (libpcap says ${name}); rawpoll builds Ethernet frames`);
    }
    this.watch.on('up', () => {
      if (!this.handle) return this.reopen();
      if (this.paused) {
        this.paused = false;
        this.handle.resume();
      }
    });
    this.watch.on('gone', () => this.dropHandle());
  }

  /**
   * Opens IF for capture and injection. `filter` is a BPF expression for what we want to receive; `bufferBytes` the
   * kernel's capture ring.
   */
  static open(iface: string, filter = 'arp', bufferBytes = 4 << 20, opts: PcapLinkOptions = {}): PcapLink {
    loadAddon();
    if (!hasNetRaw()) throw new RuntimeError(explainOpenError(iface, 'this process lacks CAP_NET_RAW', 'EPERM'));
    if (loadAddon().linkState(iface).index === 0) throw new RuntimeError(explainOpenError(iface, 'No such device', 'ENODEV'));
    return new PcapLink(iface, { bufferBytes, ...opts, filter: opts.filter ?? filter });
  }

  private openHandle(): PcapHandle {
    const o = this.opts;
    try {
      return loadAddon().pcapOpen(this.iface, {
        snaplen: o.snaplen ?? 65535, bufferSize: o.bufferBytes, promisc: o.promisc ?? true, immediate: o.immediate ?? true,
        timeoutMs: o.timeoutMs ?? 10, tstampType: o.tstampType, nanosecond: o.nanosecond ?? false, filter: o.filter,
        data: this.data, meta: this.meta,
      }, (n) => this.deliver(n), () => this.onHandleError());
    } catch (e) {
      const err = e as Error & { code?: string };
      if (err.code === 'EINVAL' && /filter/.test(err.message)) throw new UsageError(err.message);
      if (err.code === 'ENOTSUP') throw new UsageError(`${err.message} (supported here: ${pcapTimestampTypes(this.iface).join(', ') || 'none'})`);
      throw new RuntimeError(explainOpenError(this.iface, err.message, err.code ?? ''));
    }
  }

  private deliver(n: number): void {
    const m = this.meta;
    const hs = this.handlers;
    for (let i = 0, k = 0; i < n; i++, k += 5) {
      const frame = this.data.subarray(m[k], m[k] + m[k + 1]);
      for (let j = 0; j < hs.length; j++) hs[j](frame, m[k + 3], m[k + 4]);
    }
  }

  /** The capture socket failed: an outage (pause until the link is back), the end (gone), or a fault (reopen). */
  private onHandleError(): void {
    if (this.closed) return;
    const s = this.watch.check();
    if (s === 'down') {
      this.paused = true;
      return;
    }
    if (s === 'up' && !hasNetRaw()) {
      // Root was given up (-Z) since this handle was opened: a new one cannot be. Keep this one and poll it again
      // shortly — a fault with the link up is most often an outage too brief for the watch to see, which the socket
      // rides out bound (see above).
      this.paused = true;
      this.scheduleResume();
      return;
    }
    this.dropHandle();
    if (s === 'up') this.scheduleReopen();
  }

  private scheduleResume(): void {
    if (this.reopenTimer || this.closed) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (!this.handle || !this.paused) return;
      const s = this.watch.check();
      if (s === 'up') {
        this.paused = false;
        this.handle.resume();
      } else if (s === 'down') this.paused = true; // the 'up' listener resumes it
    }, 100);
    this.reopenTimer.unref();
  }

  private dropHandle(): void {
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    if (!this.handle) return;
    try {
      const s = this.handle.stats();
      this.statsBefore = { received: this.statsBefore.received + s.received, dropped: this.statsBefore.dropped + s.dropped, ifdropped: this.statsBefore.ifdropped + s.ifdropped };
    } catch {
      /* the socket is gone with the interface: its last counts are lost with it */
    }
    this.handle.close();
    this.handle = null;
    this.paused = false;
  }

  private reopen(): void {
    if (this.closed || this.handle || this.watch.status !== 'up' || this.reopenRefused) return;
    try {
      this.handle = this.openHandle();
    } catch (e) {
      if (!hasNetRaw()) {
        // No retrying: without CAP_NET_RAW (given up with -Z) no open will work. Sends say why from now on.
        this.reopenRefused = new RuntimeError(`the capture handle on ${this.iface} was lost and cannot be opened again: this process ` +
          `gave up CAP_NET_RAW (-Z) after opening it (${(e as Error).message}); run without -Z to ride out such faults`);
        return;
      }
      this.scheduleReopen(); // flapped again between the watch's read and the open: try once the state settles
    }
  }

  private scheduleReopen(): void {
    if (this.reopenTimer || this.closed) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (this.watch.check() === 'up') this.reopen();
    }, 100);
    this.reopenTimer.unref();
  }

  /** 'up', 'down' or 'gone', as last seen. */
  get status(): 'up' | 'down' | 'gone' {
    return this.watch.status;
  }

  /** Frames received and dropped by the capture ring, over every handle this link has had. */
  stats(): PcapStats {
    const b = this.statsBefore;
    if (!this.handle) return { ...b };
    const s = this.handle.stats();
    return { received: b.received + s.received, dropped: b.dropped + s.dropped, ifdropped: b.ifdropped + s.ifdropped };
  }

  /** Called for every captured frame (see FrameHandler). Returns the function that removes the handler. */
  onFrame(h: FrameHandler): () => void {
    this.handlers.push(h);
    return () => {
      const i = this.handlers.indexOf(h);
      if (i >= 0) this.handlers.splice(i, 1);
    };
  }

  /**
   * pcap_inject. The handle is non-blocking, so a full device queue answers EAGAIN/ENOBUFS: wait (a real sleep, not a
   * spin) and try again — a frame is never dropped silently. A down link throws LinkDownError, a vanished one
   * LinkGoneError: the caller decides whether to queue, count or stop.
   */
  send(frame: Uint8Array): void {
    const h = this.sendable();
    let waitedMs = 0;
    let backoffMs = 0.05;
    for (;;) {
      try {
        h.inject(frame);
        return;
      } catch (e) {
        const err = e as Error & { code?: string };
        if (err.code !== 'EAGAIN' && err.code !== 'ENOBUFS') throw this.injectError(err.code ?? '', err.message);
        if (waitedMs > SEND_RETRY_LIMIT_MS) {
          throw new RuntimeError(`send on ${this.iface}: the device queue stayed full for ${SEND_RETRY_LIMIT_MS} ms (${err.message})`);
        }
        this.sendRetries++;
        Atomics.wait(sleepCell, 0, 0, backoffMs);
        waitedMs += backoffMs;
        backoffMs = Math.min(backoffMs * 2, 10);
      }
    }
  }

  /**
   * send() for frames 0..n-1 of one buffer (frame i = buf[offsets[i], offsets[i] + lengths[i])), in order, in one
   * call into the addon: the loop, and the waits for a full queue (counted in sendRetries, as send's), run in C.
   * Returns n. A failure throws what send() would have thrown for the frame that failed — LinkDownError,
   * LinkGoneError, RuntimeError — with `sent` (a BatchSendError) saying how many frames before it went out: frames
   * 0..sent-1 did, frames sent..n-1 did not (0 when the link was already closed, gone or down).
   */
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): number {
    let h: PcapHandle;
    try {
      h = this.sendable();
    } catch (e) {
      throw Object.assign(e as RuntimeError, { sent: 0 });
    }
    const r = h.injectBatch(buf, offsets, lengths, n);
    this.sendRetries += r.waits;
    if (!r.code) return r.sent;
    const err = r.code === 'EAGAIN' || r.code === 'ENOBUFS' ? new RuntimeError(`send on ${this.iface}: ${r.error}`) : this.injectError(r.code, r.error);
    throw Object.assign(err, { sent: r.sent });
  }

  /** The handle to send on, or what stops us: closed, gone (LinkGoneError) or down (LinkDownError). */
  private sendable(): PcapHandle {
    if (this.closed) throw new RuntimeError(`link ${this.iface} is closed`);
    if (this.watch.status === 'gone') throw new LinkGoneError(this.iface);
    if (!this.handle && this.reopenRefused) throw this.reopenRefused;
    if (!this.handle || this.watch.status === 'down') throw new LinkDownError(this.iface);
    return this.handle;
  }

  /**
   * A pcap_inject that failed other than on a full queue: a fresh read of the link says down or gone (the watch polls
   * on a timer and may not have seen it yet), ENETDOWN says down even if the read came too early.
   */
  private injectError(code: string, msg: string): RuntimeError {
    const s = this.watch.check();
    if (s === 'gone') return new LinkGoneError(this.iface);
    if (s === 'down' || code === 'ENETDOWN') return new LinkDownError(this.iface);
    return new RuntimeError(`send on ${this.iface} failed: ${msg}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.length = 0;
    this.dropHandle();
    this.watch.close();
  }
}

function explainOpenError(iface: string, msg: string, code: string): string {
  if (code === 'EPERM' || /permission|not permitted|EPERM|EACCES|CAP_NET_RAW/i.test(msg)) {
    return `no permission to open ${iface} for raw access (${msg}); run as root (sudo) or give node CAP_NET_RAW and CAP_NET_ADMIN`;
  }
  if (code === 'ENODEV' || /No such device|doesn't exist|not exist/i.test(msg)) {
    return `no interface '${iface}' (${msg})`;
  }
  if (code === 'ENETDOWN') {
    return `interface ${iface} is down (${msg}); bring it up with: ip link set ${iface} up`;
  }
  return `cannot open ${iface} with libpcap: ${msg}`;
}
