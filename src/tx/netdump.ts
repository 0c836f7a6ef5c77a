import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { LinkDownError, LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { hostOwnsAddress } from '../link/iface.js';
import { PcapLink } from '../link/pcap.js';
import type { LinkWatch } from '../link/watch.js';
import {
  DEBUGNET_MAX_IN_FLIGHT, DEBUGNET_RETRIES, DEBUGNET_ROUND_MS, NETDUMP_ACKPORT, NETDUMP_FINISHED, NETDUMP_HDR_LEN,
  NETDUMP_HERALD, NETDUMP_KDH, NETDUMP_PORT, NETDUMP_TYPE_NAMES, NETDUMP_VMCORE, buildKdh, decodeAck, heraldPayload,
  netdumpChunkSize, writeNetdumpHeader,
} from '../proto/netdump.js';
import { formatIpv4 } from '../wire/addr.js';
import { parseUdpFrame } from '../wire/udpframe.js';
import { UdpSender, type SenderOptions } from './sender.js';

/**
 * A netdump client over pcap, run the way FreeBSD's debugnet runs it (sys/net/debugnet.c, netdump_client.c):
 * HERALD (seqno 1) to server:20023 from port 20024; the first ACK's source port is where everything else goes;
 * VMCORE chunks at byte offsets; the 512-byte KDH last (its dump length is final only then); FINISHED.
 * Frames as FreeBSD builds them: TTL 255, IP ID 0, DF, UDP checksum on. ACKs are read off the wire with pcap.
 *
 * Two pacing modes, both wire-compatible with netdumpd (it only echoes seqnos and writes at offsets):
 * - rounds (default, the kernel's): one 64 KiB buffer (≤ 64 datagrams) back to back, then wait until all are ACKed; after a
 *   round of `pollMs` without all ACKs, resend only the un-ACKed ones; give up after 1 + `retries` tries.
 * - window N: up to N datagrams in flight, each ACK frees a slot at once; an un-ACKed datagram is resent when 3
 *   younger ones have been ACKed (unless the path has shown reordering) or after an RTO measured from the ACKs
 *   (never above pollMs); give up after (1 + retries) × pollMs with no progress.
 *
 * Link outages (README, "When the link goes down"): the kernel's debugnet never sees one (a panicked host's link
 * stays as it was), but a userland client does, and a 2 s flap must not cost a dump that has 12 s of retries. While
 * the link is down the retransmit clock stops: sends that fail with LinkDownError are not tries, a round or RTO cut
 * by the outage does not count; once both capture handles are back (PcapLink reopens them) every un-ACKed datagram
 * in flight is sent again and the session goes on. An outage longer than `linkWaitMs` ends it (RuntimeError);
 * the interface vanishing ends it with a summary (`linkGone`).
 */

export interface NetdumpSource {
  /** Total bytes. */
  size: number;
  read(offset: number, len: number): Buffer;
  close?(): void;
}

export function fileSource(path: string): NetdumpSource {
  if (path === '-') {
    const data = fs.readFileSync(0);
    return { size: data.length, read: (o, l) => data.subarray(o, o + l) };
  }
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new UsageError(`cannot read --file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new UsageError(`--file '${path}' is not a regular file (use "-" to read standard input)`);
  }
  return {
    size: st.size,
    read(o, l) {
      const b = Buffer.allocUnsafe(l);
      let got = 0;
      while (got < l) {
        const n = fs.readSync(fd, b, got, l - got, o + got);
        if (n === 0) throw new RuntimeError(`--file '${path}' shrank while being sent (EOF at ${o + got})`);
        got += n;
      }
      return b;
    },
    close: () => fs.closeSync(fd),
  };
}

export function bufferSource(data: Buffer): NetdumpSource {
  return { size: data.length, read: (o, l) => data.subarray(o, o + l) };
}

export interface NetdumpProgress {
  bytesAcked: number;
  total: number;
  retransmits: number;
  seconds: number;
}

export interface NetdumpOptions extends Omit<SenderOptions, 'to' | 'filter' | 'srcPort' | 'ttl' | 'df' | 'ipId' | 'payloadLen'> {
  iface: string;
  server: number;
  serverPort?: number;
  source: NetdumpSource;
  /** Server-side path (herald payload). */
  path?: string;
  panic?: string;
  hostname?: string;
  versionString?: string;
  /** 0 or undefined: the kernel's rounds (64 KiB, at most 64 datagrams). N > 0: a sliding window of N. */
  window?: number;
  pollMs?: number;
  retries?: number;
  onProgress?: (p: NetdumpProgress) => void;
  /** Aborting it stops the session at once (sockets and capture handles closed); run() then resolves with a
   *  summary of what the server had ACKed, `interrupted` = the abort reason (e.g. "SIGINT"). */
  signal?: AbortSignal;
  /** How long one link outage may last before the session gives up (default 60000 ms; 0: at once). */
  linkWaitMs?: number;
  /** Called once the ACK capture is open, with the LinkWatch the outage policy follows (to report its events). */
  onLink?: (watch: LinkWatch) => void;
}

export interface NetdumpSummary {
  server: string;
  serverPort: number;
  src: string;
  /** Bytes of the source the server ACKed: all of them unless the run was interrupted. */
  bytes: number;
  /** The source's size. */
  total: number;
  /** The abort reason when `signal` stopped the session (no FINISHED sent, the server's dump is incomplete). */
  interrupted: string | null;
  /** Datagrams in the session (herald + VMCORE + KDH + FINISHED), each counted once. */
  packets: number;
  /** Datagrams sent again (all causes), and of those in --window mode: after 3 younger ACKs, after an RTO. */
  retransmits: number;
  fastRetransmits: number;
  timeoutRetransmits: number;
  /** Frames put on the wire in total. */
  sent: number;
  seconds: number;
  MBps: number;
  mode: string;
  chunk: number;
  arpMs: number | null;
  /** Times the link went down during the session, and for how long in all (ms, an outage still on included). */
  linkOutages: number;
  linkDownMs: number;
  /** The interface, when it disappeared mid-dump (the session ended there: `bytes` were ACKed, no FINISHED). */
  linkGone: string | null;
}

interface Flight {
  seq: number;
  type: number;
  offset: number;
  data: Buffer;
  sentAt: number;
  sends: number;
  acked: boolean;
  /** When it was fast-retransmitted (window mode), if it was. */
  fastAt?: number;
}

/** Thrown inside a session when the caller's signal aborts it; session() turns it into a partial summary. */
class Interrupted extends Error {}

/** nd_buf in netdump_client.c: MAXDUMPPGS (DFLTPHYS / PAGE_SIZE = 16) pages of 4 KiB per debugnet_send. */
export const NETDUMP_ROUND_BYTES = 64 * 1024;

const MACHINE_TO_FREEBSD: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', i686: 'i386', i386: 'i386' };

/** `uname -a` without spawning uname. */
export function unameA(): string {
  return `${os.type()} ${os.hostname()} ${os.release()} ${os.version()} ${os.machine()}`;
}

export class NetdumpClient {
  private sender!: UdpSender;
  private holder: dgram.Socket | null = null;
  private readonly o: NetdumpOptions;
  private readonly pollMs: number;
  private readonly retries: number;
  private seq = 1;
  private serverPort = 0;
  private readonly flights = new Map<number, Flight>();
  private wake: ((f: Flight) => void) | null = null;
  /** Rejects the wait in progress (rounds or window) when the caller's signal aborts. */
  private cancel: ((e: Error) => void) | null = null;
  private msgBuf = Buffer.alloc(NETDUMP_HDR_LEN + 4096);
  private chunk = 0;
  private retransmits = 0;
  private fastResends = 0;
  private timeoutResends = 0;
  private packets = 0;
  private bytesAcked = 0;
  private t0 = 0;
  private lastProgressCb = 0;
  /** RTT estimate (RFC 6298 style), ms. */
  private srtt = 0;
  private rttvar = 0;
  /** The ACK capture; its LinkWatch is the one the outage policy follows and reports. */
  private ackLink: PcapLink | null = null;
  private readonly linkWaitMs: number;
  /** The link is down as far as sending goes (its watch said so, or a send failed with LinkDownError). */
  private down = false;
  /** performance.now() when the current outage began; cleared by the first send that goes through after it. */
  private downSince = 0;
  /** The interface, once it is gone. */
  private gone: string | null = null;
  /** Ends the wait in progress (rounds) or pauses the window when the link goes down. */
  private onDown: (() => void) | null = null;
  /** Re-checks the link at once while waiting for it (on the watch's 'up' and 'gone'). */
  private onUp: (() => void) | null = null;

  constructor(o: NetdumpOptions) {
    this.o = o;
    this.pollMs = o.pollMs ?? DEBUGNET_ROUND_MS;
    this.retries = o.retries ?? DEBUGNET_RETRIES;
    this.linkWaitMs = o.linkWaitMs ?? 60_000;
    if (!(Number.isFinite(this.linkWaitMs) && this.linkWaitMs >= 0)) {
      throw new UsageError(`bad --link-wait '${this.linkWaitMs / 1000}': expected 0 or more seconds`);
    }
    if (o.window !== undefined && !(Number.isInteger(o.window) && o.window >= 0 && o.window <= 65536)) {
      throw new UsageError(`bad --window '${o.window}': expected 0 (the kernel's 64 KiB rounds) to 65536`);
    }
  }

  async run(): Promise<NetdumpSummary> {
    try {
      return await this.session();
    } finally {
      this.o.source.close?.();
    }
  }

  private async session(): Promise<NetdumpSummary> {
    const o = this.o;
    const filter = `udp and src host ${formatIpv4(o.server)} and dst port ${NETDUMP_ACKPORT} and udp[4:2] = ${8 + 4}`;
    this.sender = await UdpSender.open({
      ...o, to: { ip: o.server, port: o.serverPort ?? NETDUMP_PORT }, srcPort: NETDUMP_ACKPORT,
      ttl: 255, df: true, ipId: 'zero',
    });
    let ackLink: PcapLink | null = null;
    const onAbort = () => this.cancel?.(new Interrupted());
    o.signal?.addEventListener('abort', onAbort);
    try {
      // ACKs come in on a capture handle of their own: npm cap opens in immediate mode with a 64 KiB snaplen,
      // so libpcap's ring holds buffer / ~64 KiB frames — about 64 with the usual 4 MiB, fewer than the ACKs of
      // one --window 256 burst. Size the ring for twice the window (at most 64 MiB).
      const inFlight = o.window || DEBUGNET_MAX_IN_FLIGHT;
      ackLink = PcapLink.open(o.iface, filter, Math.min(64 << 20, Math.max(4 << 20, 2 * inFlight * 66 * 1024)));
      this.followLink(ackLink);
      await this.holdPort();
      this.chunk = netdumpChunkSize(this.sender.mtu);
      if (this.chunk <= 0) throw new RuntimeError(`MTU ${this.sender.mtu} is too small for netdump (needs > 52)`);
      this.checkAbort(); // an abort during ARP takes effect here
      const srcIp = this.sender.srcIp;
      ackLink.onFrame((frame) => {
        const p = parseUdpFrame(frame);
        if (!p || p.srcIp !== o.server || p.dstIp !== srcIp || p.dstPort !== NETDUMP_ACKPORT) return;
        const seq = decodeAck(p.payload);
        if (seq === null) return;
        if (this.serverPort === 0) {
          // debugnet_handle_ack: the first ACK's source port is the server's per-client socket.
          this.serverPort = p.srcPort;
          this.sender.setPorts(NETDUMP_ACKPORT, p.srcPort);
        }
        this.onAck(seq);
      });
      this.t0 = performance.now();
      await this.rounds([this.flight(NETDUMP_HERALD, 0, heraldPayload(o.path))]);
      const size = o.source.size;
      if (o.window) await this.slide(size, o.window);
      else {
        // netdump_dumper fills nd_buf (MAXDUMPPGS × PAGE_SIZE = 64 KiB) and flushes it with one debugnet_send,
        // which cuts it into MTU-sized datagrams (46 at MTU 1500, never more than 64) and waits for all their ACKs.
        for (let base = 0; base < size; base += NETDUMP_ROUND_BYTES) {
          const end = Math.min(size, base + NETDUMP_ROUND_BYTES);
          const round: Flight[] = [];
          for (let off = base; off < end && round.length < DEBUGNET_MAX_IN_FLIGHT;) {
            const len = Math.min(this.chunk, end - off);
            round.push(this.flight(NETDUMP_VMCORE, off, o.source.read(off, len)));
            off += len;
          }
          await this.rounds(round);
        }
      }
      const kdh = buildKdh({
        dumplength: size, hostname: o.hostname ?? os.hostname(), versionstring: (o.versionString ?? unameA()) + '\n',
        panicstring: o.panic ?? '', architecture: MACHINE_TO_FREEBSD[os.machine()] ?? os.machine(),
      });
      await this.rounds([this.flight(NETDUMP_KDH, 0, kdh)]);
      await this.rounds([this.flight(NETDUMP_FINISHED, 0, Buffer.alloc(0))]);
      this.progress(true);
      ackLink.close();
      await this.sender.close();
      return this.summary(size, null);
    } catch (e) {
      if (e instanceof LinkGoneError) ackLink?.watch.check(); // its 'gone' event goes out before the summary
      ackLink?.close();
      this.sender.abort();
      if (e instanceof Interrupted) return this.summary(this.bytesAcked, String(o.signal!.reason));
      if (e instanceof LinkGoneError) return this.summary(this.bytesAcked, null, e.iface);
      throw e;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
      this.holder?.close();
    }
  }

  private summary(bytes: number, interrupted: string | null, linkGone: string | null = null): NetdumpSummary {
    const o = this.o;
    const secs = this.t0 ? (performance.now() - this.t0) / 1000 : 0;
    const w = this.ackLink?.watch;
    return {
      server: formatIpv4(o.server), serverPort: this.serverPort, src: formatIpv4(this.sender.srcIp), bytes, total: o.source.size,
      interrupted, packets: this.packets, retransmits: this.retransmits, fastRetransmits: this.fastResends,
      timeoutRetransmits: this.timeoutResends, sent: this.sender.stats.sent,
      seconds: Math.round(secs * 1e6) / 1e6, MBps: secs > 0 ? Math.round((bytes / 1e6 / secs) * 1000) / 1000 : 0,
      mode: o.window ? `window ${o.window}` : `kernel rounds (64 KiB, ${Math.ceil(NETDUMP_ROUND_BYTES / this.chunk)} datagrams)`,
      chunk: this.chunk,
      arpMs: this.sender.arpMs === null ? null : Math.round(this.sender.arpMs * 1000) / 1000,
      linkOutages: w?.outages ?? 0,
      linkDownMs: w ? w.downMsTotal + (w.downSince !== null ? Date.now() - w.downSince : 0) : 0,
      linkGone,
    };
  }

  private checkAbort(): void {
    if (this.o.signal?.aborted) throw new Interrupted();
  }

  /**
   * When the host's own stack owns our address, it would answer the server's ACKs to port 20024 with ICMP
   * port-unreachable, and netdumpd gives up on an ICMP error. A plain socket on that port keeps it quiet.
   */
  private async holdPort(): Promise<void> {
    if (!hostOwnsAddress(this.sender.srcIp)) return; // our ArpResponder speaks for it; the host never sees the ACKs
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 64 * 1024 });
    s.on('message', () => {});
    await new Promise<void>((resolve, reject) => {
      s.once('error', (e: NodeJS.ErrnoException) => reject(new RuntimeError(
        `cannot hold UDP ${formatIpv4(this.sender.srcIp)}:${NETDUMP_ACKPORT} (${e.code ?? e.message}): ` +
        'another netdump client or service uses it; the host would answer ACKs with ICMP port-unreachable')));
      s.bind(NETDUMP_ACKPORT, formatIpv4(this.sender.srcIp), () => resolve());
    });
    s.on('error', () => {});
    this.holder = s;
  }

  private flight(type: number, offset: number, data: Buffer): Flight {
    this.packets++;
    return { seq: this.seq++, type, offset, data, sentAt: 0, sends: 0, acked: false };
  }

  /** Puts `f` on the wire; false when the link is down (then it was no try: `f.sends` is unchanged). */
  private transmit(f: Flight): boolean {
    writeNetdumpHeader({ type: f.type, seqno: f.seq, offset: f.offset, len: f.data.length, aux2: 0 }, this.msgBuf, 0);
    f.data.copy(this.msgBuf, NETDUMP_HDR_LEN);
    try {
      this.sender.send(this.msgBuf.subarray(0, NETDUMP_HDR_LEN + f.data.length));
    } catch (e) {
      if (e instanceof LinkDownError) {
        this.markDown();
        return false;
      }
      if (e instanceof LinkGoneError) this.gone = e.iface;
      throw e;
    }
    this.downSince = 0;
    if (f.sends > 0) this.retransmits++;
    f.sends++;
    f.sentAt = performance.now();
    this.flights.set(f.seq, f);
    return true;
  }

  private onAck(seq: number): void {
    const f = this.flights.get(seq);
    if (!f || f.acked) return;
    f.acked = true;
    this.flights.delete(seq);
    if (f.type === NETDUMP_VMCORE) this.bytesAcked += f.data.length;
    if (f.sends === 1) this.rttSample(performance.now() - f.sentAt); // Karn: only unambiguous samples
    this.progress(false);
    const w = this.wake;
    if (w) w(f);
  }

  private rttSample(ms: number): void {
    if (this.srtt === 0) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
  }

  private rto(): number {
    // 2 × srtt: a burst of N datagrams queues at the server, so the last ACK of a burst comes later than the first.
    return Math.min(this.pollMs, Math.max(50, 2 * this.srtt + 4 * this.rttvar));
  }

  private progress(force: boolean): void {
    const cb = this.o.onProgress;
    if (!cb) return;
    const now = performance.now();
    if (!force && now - this.lastProgressCb < 200) return;
    this.lastProgressCb = now;
    cb({ bytesAcked: this.bytesAcked, total: this.o.source.size, retransmits: this.retransmits, seconds: (now - this.t0) / 1000 });
  }

  /** Resolves when `pred` holds (checked on every ACK) or after `ms`; rejects with Interrupted on abort. */
  private waitUntil(pred: () => boolean, ms: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const end = (ok: boolean) => { clearTimeout(timer); this.wake = null; this.cancel = null; this.onDown = null; resolve(ok); };
      const timer = setTimeout(() => end(pred()), ms);
      this.wake = () => {
        if (pred()) end(true);
      };
      this.cancel = (e) => { clearTimeout(timer); this.wake = null; this.cancel = null; this.onDown = null; reject(e); };
      this.onDown = () => end(pred()); // the round is cut short: the caller waits for the link, not for the timer
    });
  }

  /**
   * debugnet_send: send all, wait a round for every ACK, resend only the missing, 1 + retries tries. A round the link
   * went down in (a send refused, or the outage began during the wait) is no try: once the link is back the
   * un-ACKed ones go again.
   */
  private async rounds(fs: Flight[]): Promise<void> {
    const allAcked = () => fs.every((f) => f.acked);
    for (let tries = 0; ;) {
      this.checkAbort();
      if (this.down) await this.linkBack();
      let cut = false;
      for (const f of fs) {
        if (!f.acked && !this.transmit(f)) {
          cut = true;
          break;
        }
      }
      if (cut) continue;
      if (await this.waitUntil(allAcked, this.pollMs)) return;
      if (this.down) continue;
      if (tries++ >= this.retries) throw this.giveUp(fs.find((f) => !f.acked)!, tries);
    }
  }

  /** --window N: keep N in flight, resend on RTO, fail after (1 + retries) rounds of pollMs without any progress. */
  private slide(size: number, window: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let off = 0;
      let inflight = 0;
      let resent = 0;
      let lastProgress = performance.now();
      let timer: NodeJS.Timeout | null = null;
      let pumpQueued = false;
      let finished = false;
      const order: Flight[] = [];
      let head = 0;
      const done = (e?: Error) => {
        if (finished) return;
        finished = true;
        if (timer) clearInterval(timer);
        this.wake = null;
        this.cancel = null;
        this.onDown = null;
        if (e) reject(e); else resolve();
      };
      // A link outage stops the clock (no RTO resends, no give-up count) until linkBack(); then every un-ACKed flight
      // goes again, the time down is added to `lastProgress`, and the window refills.
      let paused = false;
      const pause = () => {
        if (paused || finished) return;
        paused = true;
        const at = performance.now();
        this.linkBack().then(() => {
          paused = false;
          if (finished) return;
          lastProgress += performance.now() - at;
          try {
            for (let i = head; i < order.length; i++) {
              const f = order[i];
              if (!f.acked && !this.transmit(f)) return; // down again: transmit() paused us once more
            }
          } catch (e) {
            return done(e as Error);
          }
          pump();
        }, done);
      };
      const pump = () => {
        pumpQueued = false;
        if (finished || paused) return;
        try {
          while (head < order.length && order[head].acked) head++;
          if (head > 4096) { order.splice(0, head); head = 0; }
          while (inflight + resent < window && off < size) {
            const len = Math.min(this.chunk, size - off);
            const f = this.flight(NETDUMP_VMCORE, off, this.o.source.read(off, len));
            off += len;
            order.push(f);
            inflight++;
            if (!this.transmit(f)) break; // the link is down: it goes when the link is back
          }
        } catch (e) {
          return done(e as Error);
        }
        if (inflight === 0 && off >= size) done();
      };
      // ACKs arrive one capture callback each; refill the window once per batch of them (setImmediate runs after
      // the poll phase has drained what libpcap had), so sends go out in bursts rather than one per ACK.
      // Fast retransmit: a flight still un-ACKed when one `thresh` seqnos younger is ACKed is taken as lost now,
      // not after an RTO. On a path that reorders, that guess is mostly wrong (netdump ACKs carry nothing that
      // tells an original from a resend), so the first ACK of a once-sent flight arriving after a younger flight's
      // turns it off for the session; RTO alone then recovers losses.
      // Packet conservation: each ACK pays for at most one fast resend, and a resent copy holds a window slot until
      // its flight is ACKed, so a receiver whose socket buffer overflowed is not flooded again at once.
      let thresh = 3; // TCP's dupthresh
      let maxAcked = 0;
      this.wake = (x) => {
        inflight--;
        if (x.fastAt !== undefined) resent--;
        const now = performance.now();
        lastProgress = now;
        if (x.seq > maxAcked) maxAcked = x.seq;
        else if (x.sends === 1) thresh = Infinity;
        try {
          for (let i = head; i < order.length; i++) {
            const f = order[i];
            if (x.seq - f.seq < thresh || paused) break;
            if (!f.acked && f.fastAt === undefined) {
              if (!this.transmit(f)) break;
              f.fastAt = now;
              resent++;
              this.fastResends++;
              break;
            }
          }
        } catch (e) {
          return done(e as Error);
        }
        if (!pumpQueued) { pumpQueued = true; setImmediate(pump); }
      };
      const tick = () => {
        if (paused) return;
        const now = performance.now();
        const rto = this.rto();
        try {
          for (let i = head; i < order.length; i++) {
            const f = order[i];
            if (!f.acked && now - f.sentAt >= rto) {
              if (!this.transmit(f)) return;
              this.timeoutResends++;
            }
          }
        } catch (e) {
          return done(e as Error);
        }
        if (now - lastProgress > (this.retries + 1) * this.pollMs) {
          const f = order.slice(head).find((x) => !x.acked)!;
          done(this.giveUp(f, f.sends));
        }
      };
      timer = setInterval(tick, 10);
      this.cancel = done;
      this.onDown = pause;
      if (this.down) pause();
      else pump();
    });
  }

  /**
   * The policy's side of the ACK capture's LinkWatch: its 'up' comes after PcapLink has reopened the capture handle
   * (PcapLink's listener is the first), so ACKs to what is resent then are seen.
   */
  private followLink(link: PcapLink): void {
    this.ackLink = link;
    const w = link.watch;
    w.on('down', () => this.markDown());
    w.on('up', () => this.onUp?.());
    w.on('gone', (e: { iface: string }) => {
      this.gone = e.iface;
      this.markDown();
      this.onUp?.();
    });
    this.o.onLink?.(w);
  }

  private markDown(): void {
    if (this.down) return;
    this.down = true;
    if (this.downSince === 0) this.downSince = performance.now();
    this.ackLink?.watch.check(); // a refused send may know first: the outage is reported (and counted) now
    this.onDown?.();
  }

  /**
   * Resolves once the link can carry frames again (both handles' watches say up; a send refused after that means
   * another wait), rejects with LinkGoneError when the interface is gone, with a RuntimeError when the outage has
   * lasted linkWaitMs, and with the caller's abort. Never at once: a refused send must not spin the microtask queue.
   */
  private linkBack(): Promise<void> {
    return new Promise((resolve, reject) => {
      const prevCancel = this.cancel;
      let settled = false;
      const finish = (e?: Error) => {
        if (settled) return;
        settled = true;
        clearInterval(timer);
        this.onUp = null;
        this.cancel = prevCancel;
        if (e) reject(e);
        else resolve();
      };
      const check = () => {
        if (this.gone) return finish(new LinkGoneError(this.gone));
        const ack = this.ackLink!.watch.check();
        const snd = this.sender.link?.watch.check() ?? ack; // its 'up' reopens the sending handle
        if (this.gone) return finish(new LinkGoneError(this.gone));
        if (ack === 'up' && snd === 'up') {
          this.down = false;
          return finish();
        }
        if (performance.now() - this.downSince >= this.linkWaitMs) finish(this.linkWaitError());
      };
      const timer = setInterval(check, 50);
      this.onUp = check;
      this.cancel = finish;
      if (this.gone) queueMicrotask(check);
    });
  }

  private linkWaitError(): RuntimeError {
    const where = this.serverPort ? `${formatIpv4(this.o.server)}:${this.serverPort}` : formatIpv4(this.o.server);
    return new RuntimeError(`link ${this.o.iface} stayed down longer than --link-wait ${this.linkWaitMs / 1000} s: ` +
      `gave up on the netdump to ${where} with ${this.bytesAcked} of ${this.o.source.size} bytes ACKed`);
  }

  private giveUp(f: Flight, tries: number): RuntimeError {
    const where = this.serverPort ? `${formatIpv4(this.o.server)}:${this.serverPort}` : `${formatIpv4(this.o.server)}:${this.o.serverPort ?? NETDUMP_PORT}`;
    const what = f.type === NETDUMP_HERALD
      ? 'the herald was never ACKed: is a netdump server listening there (rawpoll netdump-server, netdumpd)?'
      : f.type === NETDUMP_FINISHED
      ? `all ${this.o.source.size} bytes and the KDH were ACKed but FINISHED was not (netdumpd closes the session ` +
        'when it gets FINISHED, so a lost ACK looks like this): the dump is most likely complete on the server'
      : `${NETDUMP_TYPE_NAMES[f.type]} seqno ${f.seq} (offset ${f.offset}) was never ACKed after ${this.bytesAcked} of ${this.o.source.size} bytes`;
    return new RuntimeError(`netdump to ${where} failed after ${tries} tries of ${this.pollMs} ms: ${what}`);
  }
}

export async function netdump(o: NetdumpOptions): Promise<NetdumpSummary> {
  return new NetdumpClient(o).run();
}
