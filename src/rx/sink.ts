/**
 * The receiving half of `rawpoll blast` (and of Linux pktgen): per-flow accounts of the pktgen test header
 * (PROTOCOLS.md §5) — loss (gaps in seq), duplicates, reordering, inter-arrival times, rate and one-way latency.
 *
 * Two layers: SinkAccounting (rx/sinkaccount.ts) is pure, fed with synthetic sequences by the unit tests; Sink feeds
 * it from a receive engine (rx/engine.ts): a UDP socket read with recvmmsg (default) or a libpcap capture on an
 * interface (--capture), each on a thread of its own, timed by the kernel, handing over batches of records.
 */
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { formatIpv4 } from '../wire/addr.js';
import { LinkWatch } from '../link/watch.js';
import { RxEngine, type RxEngineStats, type RxFamily, type TimestampSource } from './engine.js';
import type { PktgenBatch } from './batch.js';

export * from './sinkaccount.js';
import { initHistograms, SinkAccounting, type AccountingOptions, type AccountingTotals, type FlowReport, type HistogramsDoc, type IntervalReport } from './sinkaccount.js';

// ---------------------------------------------------------------------------------------------------------------
// The I/O half: a kernel UDP socket or a libpcap capture feeding a SinkAccounting.


export interface SinkOptions extends AccountingOptions {
  /** UDP destination port to count (pktgen's default is 9). */
  port: number;
  /** Only datagrams to this IPv4 address (socket: bind address, an IPv4 socket; capture: `dst host`). */
  bind?: number;
  /** Only datagrams to this IPv6 address (text; socket: bind address of the dual-stack socket; capture: `dst host`). */
  bind6?: string;
  /**
   * Socket mode without bind: 'dual' (default) one AF_INET6 socket on :: taking IPv6 and IPv4 (as netconsd does;
   * a kernel without IPv6 falls back to IPv4 and the report says so), or 'ipv4' the AF_INET socket on 0.0.0.0.
   */
  family?: RxFamily;
  /** Capture with libpcap on this interface instead of reading a socket. */
  capture?: { iface: string; bufferBytes?: number };
  /** Socket mode: receive only on this interface (SO_BINDTODEVICE); hardware timestamps need it. */
  iface?: string;
  /** Receive buffer to ask for (SO_RCVBUFFORCE as root, else capped at net.core.rmem_max). Default 32 MiB. */
  rcvbuf?: number;
  /** Which clock times each datagram (default 'kernel'). */
  timestamp?: TimestampSource;
  /** Stop after this many seconds from start(). */
  duration?: number;
  /** Stop once this many pktgen datagrams have been accounted (the batch that reaches it is accounted whole). */
  count?: number;
  /** Stop when nothing has arrived for this many seconds after the first datagram. */
  idle?: number;
  /** Call onInterval every `interval` seconds with what arrived since the last call, and once more at the end. */
  interval?: number;
  onInterval?: (r: IntervalReport) => void;
}

/**
 * Loss, split by who lost it. `seqGaps` is every seq the sink never saw; `own` the datagrams the sink's own receive
 * path dropped (its socket's overflows, or its capture ring's) — those are inside the gaps too. `network` is what is
 * left: exact when `own` is 0 (`exact`), otherwise at least this (own drops may have been datagrams of other
 * traffic on the port, and a flow's lost tail is only seen with --expect).
 */
export interface LossSplit {
  seqGaps: number;
  own: number;
  network: number;
  exact: boolean;
}

export interface SinkReport {
  mode: 'socket' | 'capture';
  port: number;
  /** The address listened on (IPv4 dotted quad, or IPv6 RFC 5952 text), null for any. */
  bind: string | null;
  /**
   * Socket mode: 'dual' (IPv6 and IPv4 on one socket) or 'ipv4'; capture: null (it sees both). familyWarning says
   * why 'dual' fell back to 'ipv4' (a kernel without IPv6). Always set by Sink; optional for reports built by hand.
   */
  family?: RxFamily | null;
  familyWarning?: string | null;
  iface: string | null;
  /** Seconds the sink listened. */
  seconds: number;
  /** Why it stopped: 'count', 'duration', 'idle', 'stopped' (stop() called) or the reason given to stop(). */
  reason: string;
  /** The clock that timed each datagram ('hw' asked of an interface without it falls back: timestampWarning). */
  timestamp: TimestampSource;
  clock: string;
  timestampWarning: string | null;
  /** Socket mode: the receive buffer the kernel granted, and whether SO_RCVBUFFORCE lifted the rmem_max cap. */
  rcvbufBytes: number | null;
  rcvbufForced: boolean | null;
  /** Socket mode: datagrams the kernel dropped because the socket's buffer was full (our loss). */
  socketDrops: number | null;
  /** Capture mode: libpcap's counts (pcap_stats) over the run; `dropped` is frames our capture ring had no room for. */
  capture: { received: number; dropped: number; ifdropped: number } | null;
  loss: LossSplit;
  /** The receive engine's own counts (batches handed over, waits for JavaScript, datagrams without a timestamp). */
  engine: RxEngineStats;
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

/**
 * An IPv6 address in RFC 5952 text (ipaddr.js), for --bind and the reports; a zone (%eth0) is not taken: -i names
 * the interface.
 */
export function parseIpv6(s: string, what: string): string {
  const t = String(s).trim();
  if (!ipaddr.IPv6.isValid(t) || t.includes('%')) {
    throw new UsageError(`bad ${what} '${s}': expected an IPv6 address like 2001:db8::2 (or an IPv4 one like 10.0.0.2)`);
  }
  return ipaddr.IPv6.parse(t).toRFC5952String();
}

/**
 * The capture's BPF filter: UDP to `port` (libpcap's `udp` matches IPv4, and IPv6 whose first next header is UDP),
 * plus IPv6 frames whose first next header is Hop-by-Hop (0), Routing (43), Destination Options (60) or Fragment
 * (44): a classic BPF filter cannot walk the extension header chain (no loops), so the engine does (rx.cc OnFrame).
 * libpcap needs the `vlan` keyword to look past an 802.1Q tag.
 */
export function captureFilter(port: number, bind?: number, bind6?: string): string {
  const ext = '(ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 60 or ip6[6] == 44)';
  let match: string;
  if (bind !== undefined) match = `udp dst port ${port} and dst host ${formatIpv4(bind)}`;
  else if (bind6 !== undefined) match = `(udp dst port ${port} and dst host ${bind6}) or (ip6 dst host ${bind6} and ${ext})`;
  else match = `udp dst port ${port} or (ip6 and ${ext})`;
  return `(${match}) or (vlan and (${match}))`;
}

/** Time the watched link was down so far, counting an outage still going on. */
function downMs(w: LinkWatch): number {
  return w.downMsTotal + (w.downSince !== null ? Date.now() - w.downSince : 0);
}

/** Monotonic ns as a Number: exact for 104 days of uptime. */
function monoNs(): number {
  return Number(process.hrtime.bigint());
}

/**
 * Datagrams the kernel dropped for the UDP socket(s) bound to `port` (the `drops` column of /proc/net/udp in our
 * network namespace): the tell-tale that a socket could not keep up.
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
  private engine: RxEngine<PktgenBatch> | null = null;
  private linkWatch: LinkWatch | null = null;
  private timers: NodeJS.Timeout[] = [];
  private startedNs = 0;
  private stoppedNs = 0;
  /** Monotonic ns when the last batch with records arrived (the idle timer's clock). */
  private lastBatchNs = 0;
  private reason = 'stopped';
  private final: SinkReport | null = null;
  private histogramsDoc: HistogramsDoc | null = null;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';

  constructor(options: SinkOptions) {
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new UsageError(`bad sink port '${options.port}': expected 1-65535`);
    }
    if (options.bind6 !== undefined) {
      if (options.bind !== undefined) throw new UsageError(`bind ${formatIpv4(options.bind)} and bind6 ${options.bind6}: give one address`);
      options = { ...options, bind6: parseIpv6(options.bind6, 'bind6') };
    }
    if (options.family !== undefined && options.family !== 'ipv4' && options.family !== 'dual') {
      throw new UsageError(`bad family '${options.family}': expected 'ipv4' or 'dual'`);
    }
    this.options = options;
    this.accounting = new SinkAccounting({
      midStream: options.midStream, expect: options.expect, maxFlows: options.maxFlows, intervals: options.interval !== undefined,
    });
    this.done = new Promise((res) => (this.resolveDone = res));
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new RuntimeError('this sink was already started');
    this.state = 'running';
    const o = this.options;
    await initHistograms();
    const onBatch = (b: PktgenBatch) => this.onBatch(b);
    const common = { port: o.port, mode: 'pktgen' as const, timestamp: o.timestamp ?? 'kernel', bind: o.bind };
    try {
      if (o.capture) {
        const filter = captureFilter(o.port, o.bind, o.bind6);
        this.linkWatch = new LinkWatch(o.capture.iface);
        if (this.linkWatch.status === 'gone') throw new UsageError(`no such interface '${o.capture.iface}' (ip link lists them)`);
        this.engine = RxEngine.capture({ ...common, iface: o.capture.iface, filter, bufferSize: o.capture.bufferBytes ?? 64 << 20 }, onBatch);
        this.linkWatch.on('gone', () => this.finish(`interface ${o.capture!.iface} disappeared`));
      } else {
        const family: RxFamily = o.bind6 !== undefined ? 'dual' : o.bind !== undefined ? 'ipv4' : o.family ?? 'dual';
        this.engine = RxEngine.socket({ ...common, family, bind6: o.bind6, iface: o.iface, rcvbuf: o.rcvbuf ?? 32 << 20 }, onBatch);
      }
    } catch (e) {
      this.linkWatch?.close();
      this.state = 'stopped';
      throw e;
    }
    void this.engine.ended.then((end) => {
      if (end instanceof LinkGoneError) this.finish(`interface ${o.capture?.iface ?? o.iface} disappeared`);
      else if (end) this.finish(`receive error: ${end.message}`);
    });
    this.startedNs = monoNs();
    if (o.duration !== undefined) {
      this.timers.push(setTimeout(() => this.finish('duration'), o.duration * 1000));
    }
    if (o.idle !== undefined) {
      const idleNs = o.idle * 1e9;
      const step = Math.max(20, Math.min(250, o.idle * 250));
      this.timers.push(setInterval(() => {
        if (this.lastBatchNs > 0 && monoNs() - this.lastBatchNs >= idleNs) this.finish('idle');
      }, step));
    }
    if (o.interval !== undefined && o.onInterval) {
      this.timers.push(setInterval(() => o.onInterval!(this.accounting.interval(this.rxNow())), o.interval * 1000));
    }
  }

  /** Capture mode: the link's watch ('down', 'up', 'gone' events); the engine rides out outages. */
  get watch(): LinkWatch | null {
    return this.linkWatch;
  }

  /** Now on the engine's receive clock (rxNs); for the hardware clock, the latest arrival. */
  private rxNow(): number {
    const epochUs = this.engine?.handle.epochUs ?? 0;
    return epochUs > 0 ? Date.now() * 1e6 - epochUs * 1000 : this.accounting.lastArrivalNs;
  }

  private onBatch(b: PktgenBatch): void {
    if (this.state === 'stopped') return;
    this.accounting.recordBatch(b);
    if (b.n > 0) this.lastBatchNs = monoNs();
    if (this.options.count !== undefined && this.accounting.accounted >= this.options.count) this.finish('count');
  }

  /** Stops the engine; what it still held is accounted before the report is made. */
  private finish(reason: string): void {
    if (this.state !== 'running') return;
    this.reason = reason;
    this.state = 'stopping';
    this.stoppedNs = monoNs();
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    const engine = this.engine;
    void (async () => {
      if (engine) await engine.stop();
      this.linkWatch?.check();
      this.linkWatch?.close();
      if (this.options.interval !== undefined && this.options.onInterval) {
        // final: the lost tail --expect reveals belongs to the last interval, so the intervals add up to the totals.
        this.options.onInterval(this.accounting.interval(Math.max(this.rxNow(), this.accounting.lastArrivalNs), true));
      }
      this.final = this.report();
      this.histogramsDoc = this.accounting.histograms();
      this.accounting.destroy(); // its histograms live in WebAssembly memory, which no garbage collector frees
      this.state = 'stopped';
      this.resolveDone(this.final);
    })();
  }

  /** Stops listening (if still running) and returns the final report; `reason` is recorded in it. */
  async stop(reason = 'stopped'): Promise<SinkReport> {
    if (this.state === 'new') {
      this.state = 'running';
    }
    this.finish(reason);
    return this.done;
  }

  /** The encoded histograms of this run (--histogram FILE), to merge with other sinks'; final once stopped. */
  histograms(): HistogramsDoc {
    return this.histogramsDoc ?? this.accounting.histograms();
  }

  /** A snapshot of the accounts so far (the final report once stopped). */
  report(): SinkReport {
    if (this.final) return this.final;
    const o = this.options;
    const end = this.state === 'running' ? monoNs() : this.stoppedNs;
    const h = this.engine?.handle;
    const es: RxEngineStats = this.engine?.stats() ?? {
      datagrams: 0, ownDrops: 0, ifDrops: 0, captured: 0, truncated: 0, noTimestamp: 0, batches: 0, queueWaits: 0, linkDownMs: 0, fragments: 0,
    };
    const totals = this.accounting.totals();
    const w = this.linkWatch;
    return {
      mode: o.capture ? 'capture' : 'socket',
      port: o.port,
      bind: o.bind6 ?? (o.bind !== undefined ? formatIpv4(o.bind) : null),
      iface: o.capture?.iface ?? o.iface ?? null,
      seconds: this.startedNs ? Math.round((end - this.startedNs) / 1e6) / 1000 : 0,
      reason: this.state === 'running' || this.state === 'new' ? 'running' : this.reason,
      timestamp: h?.timestamp ?? o.timestamp ?? 'kernel',
      clock: h?.clock ?? '',
      timestampWarning: h?.warning ?? null,
      rcvbufBytes: o.capture ? null : h?.rcvbuf ?? null,
      rcvbufForced: o.capture ? null : h?.rcvbufForced ?? null,
      family: o.capture ? null : h?.family ?? null,
      familyWarning: h?.familyWarning ?? null,
      socketDrops: o.capture ? null : es.ownDrops,
      capture: o.capture ? { received: es.captured, dropped: es.ownDrops, ifdropped: es.ifDrops } : null,
      loss: {
        seqGaps: totals.lost,
        own: es.ownDrops,
        network: Math.max(0, totals.lost - es.ownDrops),
        exact: es.ownDrops === 0,
      },
      engine: es,
      linkOutages: w ? w.outages : 0,
      linkDownMs: w ? downMs(w) : 0,
      maxFlows: this.accounting.maxFlows,
      totals,
      flows: this.accounting.flowReports(),
    };
  }
}
