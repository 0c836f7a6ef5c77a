/**
 * The receiving half of `rawpoll blast` (and of Linux pktgen): reads the pktgen test header (PROTOCOLS.md §5) from
 * each UDP datagram and keeps per-flow accounts — loss (gaps in seq), duplicates, reordering, inter-arrival times,
 * rate and one-way latency (tv_sec/tv_usec against our wall clock; meaningful only when the clocks are synced, as
 * they are between namespaces of one host).
 *
 * Two layers: SinkAccounting is pure (no I/O, fed with synthetic sequences by the unit tests); Sink feeds it from
 * a kernel UDP socket (default) or from a libpcap capture on an interface (--capture, for rates the socket drops).
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { RuntimeError, UsageError } from '../errors.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';
import { UDP_FIELD } from '../wire/udp.js';
import { IPV4_FIELD } from '../wire/ipv4.js';
import { readBe16, readBe32 } from '../wire/checksum.js';
import { locateUdp, type UdpLocation } from '../wire/udpframe.js';
import { PcapLink } from '../link/pcap.js';
import type { PcapStats } from '../link/addon.js';
import type { LinkWatch } from '../link/watch.js';


/**
 * Where the UDP payload of an Ethernet[/802.1Q]/IPv4/UDP frame to `port` starts, or -1. Writes the addresses into
 * `out` instead of allocating: the capture path runs this per frame. The frame rules are wire/udpframe.ts's
 * locateUdp (the same as parseUdpFrame's); on top, datagrams to another port are refused. The payload ends where the UDP length says, so
 * Ethernet padding is never counted as payload.
 */
export function locateUdpPayload(f: Uint8Array, port: number, out: { srcIp: number; dstIp: number; srcPort: number; len: number }): number {
  if (!locateUdp(f, where)) return -1;
  const { ip, udp } = where;
  if (readBe16(f, udp + UDP_FIELD.dstPort) !== port) return -1;
  out.srcIp = readBe32(f, ip + IPV4_FIELD.src);
  out.dstIp = readBe32(f, ip + IPV4_FIELD.dst);
  out.srcPort = readBe16(f, udp + UDP_FIELD.srcPort);
  out.len = where.udpLen - UDP_FIELD.HEADER_LEN;
  return udp + UDP_FIELD.HEADER_LEN;
}
/** locateUdpPayload's scratch: one per process, no allocation per frame. */
const where: UdpLocation = { ip: 0, udp: 0, udpLen: 0 };

export * from './sinkaccount.js';
import { SinkAccounting, type AccountingOptions, type AccountingTotals, type FlowReport } from './sinkaccount.js';

// ---------------------------------------------------------------------------------------------------------------
// The I/O half: a kernel UDP socket or a libpcap capture feeding a SinkAccounting.

export interface SinkOptions extends AccountingOptions {
  /** UDP destination port to count (pktgen's default is 9). */
  port: number;
  /** Only datagrams to this IPv4 address (socket: bind address; capture: `dst host`). */
  bind?: number;
  /** Capture with libpcap on this interface instead of reading a socket. */
  capture?: { iface: string; bufferBytes?: number };
  /** SO_RCVBUF to ask for (the kernel caps it at net.core.rmem_max). Default 32 MiB. */
  rcvbuf?: number;
  /** Stop after this many seconds from start(). */
  duration?: number;
  /** Stop once this many pktgen datagrams have arrived. */
  count?: number;
  /** Stop when nothing has arrived for this many seconds after the first datagram. */
  idle?: number;
}

export interface SinkReport {
  mode: 'socket' | 'capture';
  port: number;
  bind: string | null;
  iface: string | null;
  /** Seconds the sink listened. */
  seconds: number;
  /** Why it stopped: 'count', 'duration', 'idle', 'stopped' (stop() called) or the reason given to stop(). */
  reason: string;
  /** Socket mode: the receive buffer the kernel granted, and datagrams it dropped because that buffer was full. */
  rcvbufBytes: number | null;
  socketDrops: number | null;
  /** Capture mode: libpcap's counts (pcap_stats) over the run; `dropped` is frames our capture ring had no room for. */
  capture: PcapStats | null;
  /**
   * Flows the sink keeps accounts for (--max-flows); totals.refused counts the datagrams beyond: 'flows-evicted' (a
   * one-datagram flow that gave way to a new one), 'flows-over-budget' (a new flow with no one-datagram flow to evict).
   */
  maxFlows: number;
  /** Capture mode: link outages during the run and the time the link was down, in ms. */
  linkOutages: number;
  linkDownMs: number;
  totals: AccountingTotals;
  flows: FlowReport[];
}

/** Time the watched link was down so far, counting an outage still going on. */
function downMs(w: LinkWatch): number {
  return w.downMsTotal + (w.downSince !== null ? Date.now() - w.downSince : 0);
}

/** Monotonic ns as a Number: exact for 104 days of uptime, enough for inter-arrival arithmetic. */
function monoNs(): number {
  return Number(process.hrtime.bigint());
}

/** Wall clock in µs with sub-ms resolution (Date.now() has only ms). */
function wallUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/**
 * Datagrams the kernel dropped for the UDP socket(s) bound to `port` (the `drops` column of /proc/net/udp in our
 * network namespace): the tell-tale that the socket could not keep up and --capture is needed.
 */
export function udpSocketDrops(port: number): number | null {
  try {
    return udpDropsIn(readFileSync('/proc/self/net/udp', 'utf8'), port);
  } catch {
    return null;
  }
}

/** The same from the text of a /proc/net/udp table (null when no socket is bound to the port). */
export function udpDropsIn(table: string, port: number): number | null {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let drops: number | null = null;
  for (const l of table.split('\n').slice(1)) {
    const f = l.trim().split(/\s+/);
    if (f.length < 13 || !f[1].endsWith(':' + hexPort)) continue;
    drops = (drops ?? 0) + Number(f[f.length - 1]);
  }
  return drops;
}

/**
 * rawpoll's traffic sink as a library: `const s = new Sink({port: 9}); await s.start(); … const r = await s.done;`
 * (or `await s.stop()` at any time). `report()` is a live snapshot.
 */
export class Sink {
  readonly options: SinkOptions;
  readonly accounting: SinkAccounting;
  /** Resolves with the final report when the sink stops (count, duration, idle, or stop()). */
  readonly done: Promise<SinkReport>;
  private resolveDone!: (r: SinkReport) => void;
  private socket: dgram.Socket | null = null;
  private link: PcapLink | null = null;
  private timers: NodeJS.Timeout[] = [];
  private startedNs = 0;
  private anchorNs = -Infinity;
  private anchorWallUs = 0;
  private stoppedNs = 0;
  private drops0: number | null = null;
  private dropsEnd: number | null = null;
  private rcvbuf: number | null = null;
  private reason = 'stopped';
  private captureStats: PcapStats | null = null;
  private linkSeen = { outages: 0, downMs: 0 };
  private final: SinkReport | null = null;
  private state: 'new' | 'running' | 'stopped' = 'new';

  constructor(options: SinkOptions) {
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new UsageError(`bad sink port '${options.port}': expected 1-65535`);
    }
    this.options = options;
    this.accounting = new SinkAccounting({ midStream: options.midStream, expect: options.expect, maxFlows: options.maxFlows });
    this.done = new Promise((res) => (this.resolveDone = res));
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new RuntimeError('this sink was already started');
    this.state = 'running';
    const o = this.options;
    if (o.capture) this.openCapture(o.capture.iface, o.capture.bufferBytes);
    else await this.openSocket();
    this.startedNs = monoNs();
    if (o.duration !== undefined) {
      this.timers.push(setTimeout(() => this.finish('duration'), o.duration * 1000));
    }
    if (o.idle !== undefined) {
      const idleNs = o.idle * 1e9;
      const step = Math.max(20, Math.min(250, o.idle * 250));
      this.timers.push(setInterval(() => {
        const last = this.lastArrivalNs();
        if (last > 0 && monoNs() - last >= idleNs) this.finish('idle');
      }, step));
    }
  }

  /**
   * Capture mode: the link's watch ('down', 'up', 'gone' events). The sink keeps running across an outage (the
   * capture handle reopens when the link is back); a vanished interface stops it with reason
   * "interface IF disappeared".
   */
  get watch(): LinkWatch | null {
    return this.link?.watch ?? null;
  }

  private lastArrivalNs(): number {
    return this.accounting.lastArrivalNs;
  }

  private onDatagram(srcIp: number, srcPort: number, dstIp: number, buf: Uint8Array, off: number, len: number): void {
    if (this.state !== 'running') return;
    // One clock read per datagram: the wall clock follows from the monotonic one, re-anchored every second.
    const ns = monoNs();
    if (ns - this.anchorNs > 1e9) {
      this.anchorNs = monoNs();
      this.anchorWallUs = wallUs();
    }
    const wall = this.anchorWallUs + (ns - this.anchorNs) / 1000;
    const ok = this.accounting.recordAt(srcIp, srcPort, dstIp, this.options.port, buf, off, len, ns, wall);
    if (ok && this.options.count !== undefined && this.accounting.accounted >= this.options.count) {
      this.finish('count');
    }
  }

  private openSocket(): Promise<void> {
    const o = this.options;
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: o.rcvbuf ?? 32 << 20 });
    this.socket = sock;
    const bindIp = o.bind ?? 0;
    // rinfo.address is a string: memoise its parse, most runs see one or a few senders.
    let lastAddr = '';
    let lastIp = 0;
    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== lastAddr) {
        lastAddr = rinfo.address;
        lastIp = parseIpv4(rinfo.address, 'source address');
      }
      this.onDatagram(lastIp, rinfo.port, bindIp, msg, 0, msg.length);
    });
    return new Promise((res, rej) => {
      sock.once('error', (e: NodeJS.ErrnoException) => {
        this.socket = null;
        sock.close();
        const where = `${o.bind !== undefined ? formatIpv4(o.bind) : '0.0.0.0'}:${o.port}`;
        if (e.code === 'EADDRINUSE') rej(new RuntimeError(`UDP ${where} is already in use by another socket; stop it, or use --capture -i IF`));
        else if (e.code === 'EADDRNOTAVAIL') rej(new UsageError(`bad --bind '${formatIpv4(o.bind ?? 0)}': no interface here has that address`));
        else if (e.code === 'EACCES') rej(new RuntimeError(`no permission to bind UDP ${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE`));
        else rej(new RuntimeError(`cannot listen on UDP ${where}: ${e.message}`));
      });
      sock.bind({ port: o.port, address: o.bind !== undefined ? formatIpv4(o.bind) : undefined, exclusive: true }, () => {
        sock.removeAllListeners('error');
        sock.on('error', () => { /* a receive error on a bound UDP socket (e.g. ICMP) is not fatal to counting */ });
        try {
          this.rcvbuf = sock.getRecvBufferSize();
        } catch {
          this.rcvbuf = null;
        }
        this.drops0 = udpSocketDrops(o.port);
        res();
      });
    });
  }

  private openCapture(iface: string, bufferBytes = 64 << 20): void {
    const o = this.options;
    const match = `udp dst port ${o.port}${o.bind !== undefined ? ` and dst host ${formatIpv4(o.bind)}` : ''}`;
    // libpcap needs the `vlan` keyword to look past an 802.1Q tag.
    const filter = `(${match}) or (vlan and ${match})`;
    // Not immediate mode: libpcap then uses TPACKET_V3, whose blocks pack frames by their real size (immediate mode's
    // TPACKET_V2 gives each a snaplen-sized slot: ~1000 frames in 64 MiB); the kernel hands over a block when it is
    // full or 10 ms old, and timestamps are taken by the kernel on arrival either way.
    this.link = PcapLink.open(iface, filter, bufferBytes, { immediate: false, timeoutMs: 10 });
    this.link.watch.on('gone', () => this.finish(`interface ${iface} disappeared`));
    const at = { srcIp: 0, dstIp: 0, srcPort: 0, len: 0 };
    this.link.onFrame((frame) => {
      const off = locateUdpPayload(frame, o.port, at);
      if (off >= 0) this.onDatagram(at.srcIp, at.srcPort, at.dstIp, frame, off, at.len);
    });
  }

  private finish(reason: string): void {
    if (this.state !== 'running') return;
    this.reason = reason;
    this.state = 'stopped';
    this.stoppedNs = monoNs();
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    if (this.socket) {
      this.dropsEnd = udpSocketDrops(this.options.port);
      this.socket.close();
      this.socket = null;
    }
    if (this.link) {
      this.captureStats = this.link.stats();
      this.linkSeen = { outages: this.link.watch.outages, downMs: downMs(this.link.watch) };
      this.link.close();
      this.link = null;
    }
    this.final = this.report();
    this.resolveDone(this.final);
  }

  /** Stops listening (if still running) and returns the final report; `reason` is recorded in it. */
  async stop(reason = 'stopped'): Promise<SinkReport> {
    if (this.state === 'new') {
      this.state = 'running';
    }
    this.finish(reason);
    return this.done;
  }

  /** A snapshot of the accounts so far (the final report once stopped). */
  report(): SinkReport {
    if (this.final) return this.final;
    const o = this.options;
    const end = this.state === 'stopped' ? this.stoppedNs : monoNs();
    const drops = this.dropsEnd ?? (this.socket ? udpSocketDrops(o.port) : null);
    return {
      mode: o.capture ? 'capture' : 'socket',
      port: o.port,
      bind: o.bind !== undefined ? formatIpv4(o.bind) : null,
      iface: o.capture?.iface ?? null,
      seconds: this.startedNs ? Math.round((end - this.startedNs) / 1e6) / 1000 : 0,
      reason: this.state === 'stopped' ? this.reason : 'running',
      rcvbufBytes: o.capture ? null : this.rcvbuf,
      socketDrops: o.capture || drops === null || this.drops0 === null ? null : drops - this.drops0,
      capture: this.captureStats ?? (this.link ? this.link.stats() : null),
      linkOutages: this.link ? this.link.watch.outages : this.linkSeen.outages,
      linkDownMs: this.link ? downMs(this.link.watch) : this.linkSeen.downMs,
      maxFlows: this.accounting.maxFlows,
      totals: this.accounting.totals(),
      flows: this.accounting.flowReports(),
    };
  }
}
