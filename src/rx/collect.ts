import { promises as fsp } from 'node:fs';
import { RuntimeError } from '../errors.js';
import { formatIpv4 } from '../wire/addr.js';
import { formatIpAddress, parseIpAddress } from '../wire/endpoint.js';
import { formatIpv6Addr } from '../wire/ipv6.js';
import { OopsCollector, OopsEvent, OOPS_DEFAULTS, DiskWatch, removeStaleTemps } from './oopscollect.js';
import { NetconsoleCollector } from './nclog.js';
import { SyslogForwarder } from './syslog.js';
import { RxEngine, type PayloadBatch } from './engine.js';
import { HookRunner, type HookEvent } from './hook.js';

/**
 * `rawpoll collect`: ordinary UDP sockets (receiving needs no raw access) feeding the netconsole and netoops
 * receivers, one event stream out. Each port is read by a receive engine (rx/engine.ts): recvmmsg on a thread of its
 * own with a 32 MiB buffer (SO_RCVBUFFORCE as root, else up to net.core.rmem_max), handing over datagrams in
 * batches, so a burst of log lines waits in the buffer instead of being dropped while JavaScript writes files; what
 * the kernel still drops is counted (`socket_overflow` in the protocol's `dropped` event). Events: new-host (once per source address, whichever protocol saw it first),
 * dump-complete, dump-partial, dump-dropped, dropped (per protocol, `proto` netoops or netconsole: counts by reason
 * since start, when they changed, at most every dropReportMs and at close), plus whatever the netconsole receiver
 * reports. The budgets that bound each receiver under hostile traffic are theirs (OopsCollector, NetconsoleCollector;
 * README "Budgets"). Both receivers share one DiskWatch: disk-full / write-error once per episode,
 * write-resumed when writing works again. At start, temp files a killed predecessor left are removed
 * (stale-temp-removed).
 */

export interface CollectEvent {
  event: string;
  host: string;
  [k: string]: unknown;
}

export interface CollectOptions {
  dir: string;
  bind?: string;
  /** UDP port for netconsole (null/undefined: off). 0 picks a free port (tests). */
  netconsolePort?: number | null;
  oopsPort?: number | null;
  idleMs?: number;
  maxOpenDumps?: number;
  maxDumpsPerHost?: number;
  maxBytesPerDump?: number;
  maxTotalBytes?: number;
  maxQueuedWrites?: number;
  /** ncfrag pieces one netconsole record may take. */
  maxFragmentsPerRecord?: number;
  dropReportMs?: number;
  /**
   * A unix datagram socket (/dev/log) each netconsole record also goes to, as RFC 5424 (rx/syslog.ts). Connected at
   * start: a socket that is not there fails the start (RuntimeError naming it) before anything is created.
   */
  syslog?: string;
  /**
   * A program run after each complete oops report, with the report (.log) and sidecar (.json) paths as arguments
   * (the sidecar's is '' if it could not be written); each ends in a `hook` event. Checked by checkHookProgram.
   */
  hook?: string;
  /** The hook's time limit, ms (HOOK_DEFAULTS). */
  hookTimeoutMs?: number;
  onEvent: (e: CollectEvent) => void;
}

/** Each port's receive buffer: a netconsole burst or a dump's datagrams x retransmits wait here while files are written. */
const RCVBUF = 32 << 20;

/** What listen() feeds: each datagram, then (if the receiver batches its writes) flush at the end of the batch. */
interface Receiver {
  handle(msg: Buffer, from: { address: string; port: number }): void;
  flush?(): void;
}

/**
 * A receive engine on address:port handing each datagram to `rx.handle`, then calling `rx.flush` once per batch.
 * `msg` is a view of the engine's batch buffer, not a copy: a receiver copies what it keeps past the batch (the
 * netoops receiver copies each chunk it keeps; the netconsole receiver keeps views only until its flush). A receiver
 * that throws is reported through `onError` and the batch goes on. The error names the protocol and what to do.
 */
function listen(port: number, address: string | undefined, what: string, rx: Receiver, onError: (err: unknown) => void,
  got: { datagrams: number; bytes: number }): RxEngine<PayloadBatch> {
  // Dual-stack by default, as netconsd: one AF_INET6 socket takes IPv4 (v4-mapped) and IPv6. --bind IPv4 is an IPv4
  // socket; --bind IPv6 a dual one on that address.
  const a = address !== undefined ? parseIpAddress(address, '--bind') : null;
  const where = a === null ? { family: 'dual' as const } : a.family === 4 ? { family: 'ipv4' as const, bind: a.ip } : { family: 'dual' as const, bind6: formatIpAddress(a) };
  let lastIp = -1;
  let lastAddr = '';
  const last6 = new Uint8Array(16);
  let last6Addr = '';
  try {
    // queue 4: while JavaScript is behind, at most 4 handed-over batches wait in memory (~1 MiB each of small
    // datagrams, 8 MiB at most); the rest waits in the kernel's buffer, where an overflow is counted.
    return RxEngine.socket({ port, ...where, mode: 'payload', timestamp: 'user', rcvbuf: RCVBUF, batchRecords: 1024, flushMs: 2, queue: 4 }, (b: PayloadBatch) => {
      try {
        got.datagrams += b.n;
        for (let i = 0; i < b.n; i++) {
          got.bytes += b.len[i];
          if (b.af !== undefined && b.af[i] === 6) {
            // An IPv6 source: its RFC 5952 text, made again only when the address changes.
            const src = b.srcIp6!.subarray(i * 16, i * 16 + 16);
            if (last6Addr === '' || !equal16(src, last6)) {
              last6.set(src);
              last6Addr = formatIpv6Addr(src);
            }
            try {
              rx.handle(b.data.subarray(b.off[i], b.off[i] + b.len[i]), { address: last6Addr, port: b.srcPort[i] });
            } catch (err) {
              onError(err);
            }
            continue;
          }
          if (b.srcIp[i] !== lastIp) {
            lastIp = b.srcIp[i];
            lastAddr = formatIpv4(lastIp);
          }
          try {
            rx.handle(b.data.subarray(b.off[i], b.off[i] + b.len[i]), { address: lastAddr, port: b.srcPort[i] });
          } catch (err) {
            onError(err);
          }
        }
      } finally {
        try {
          rx.flush?.();
        } catch (err) {
          onError(err);
        }
      }
    });
  } catch (e) {
    const code = (e as { code?: string }).code;
    // An IPv4 socket on the port refuses the dual-stack one too: the engine says which half is taken.
    const host = (e as { inUse?: string }).inUse === 'ipv4' ? '0.0.0.0' : a === null ? '[::]' : a.family === 6 ? `[${formatIpAddress(a)}]` : formatIpAddress(a);
    throw new RuntimeError(`cannot listen on UDP ${host}:${port} for ${what}: ${code || (e as Error).message}` +
      (code === 'EADDRINUSE' ? ' (another collector running?)' : code === 'EADDRNOTAVAIL' ? ' (--bind must be an address of this host)' : ''));
  }
}

function equal16(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class CollectServer {
  readonly ports: { netconsole: number | null; oops: number | null } = { netconsole: null, oops: null };
  /** Set when the kernel has no IPv6 and the default dual-stack sockets fell back to IPv4: says so. */
  familyWarning: string | null = null;
  readonly oops: OopsCollector | null = null;
  nc: NetconsoleCollector | null = null;
  readonly disk: DiskWatch;
  /** --syslog's socket; its refusals are counted in the netconsole drops (syslog_busy, syslog_down, syslog_error). */
  syslog: SyslogForwarder | null = null;
  private engines: { proto: 'netconsole' | 'netoops'; engine: RxEngine<PayloadBatch> }[] = [];
  private hosts = new Set<string>();
  /** Datagrams and payload bytes each protocol's engine handed over (for --metrics). */
  readonly received = { netconsole: { datagrams: 0, bytes: 0 }, netoops: { datagrams: 0, bytes: 0 } };
  readonly hook: HookRunner | null = null;
  private lastDrops: Record<string, string> = {};
  private dropTimer: NodeJS.Timeout | null = null;
  private readonly onEvent: (e: CollectEvent) => void;

  private constructor(private readonly o: CollectOptions) {
    this.onEvent = o.onEvent;
    this.disk = new DiskWatch(o.dir, (e) => this.emit(e));
    if (o.hook !== undefined) {
      this.hook = new HookRunner({ prog: o.hook, timeoutMs: o.hookTimeoutMs, onEvent: (e: HookEvent) => this.emit({ ...e, host: '-' }) });
    }
    if (o.oopsPort !== undefined && o.oopsPort !== null) {
      this.oops = new OopsCollector({
        dir: o.dir,
        disk: this.disk,
        onEvent: (e) => this.emit(e),
        idleMs: o.idleMs ?? OOPS_DEFAULTS.idleMs,
        maxOpenDumps: o.maxOpenDumps,
        maxDumpsPerHost: o.maxDumpsPerHost,
        maxBytesPerDump: o.maxBytesPerDump,
        maxTotalBytes: o.maxTotalBytes,
        maxQueuedWrites: o.maxQueuedWrites,
      });
    }
  }

  static async start(o: CollectOptions): Promise<CollectServer> {
    const syslog = o.syslog !== undefined ? SyslogForwarder.open(o.syslog) : null;
    await fsp.mkdir(o.dir, { recursive: true });
    // A collector killed mid-write left hidden temp files that hold space nobody can see: remove them first.
    const stale = await removeStaleTemps(o.dir);
    const s = new CollectServer(o);
    s.syslog = syslog;
    if (stale.files.length > 0) s.emit({ event: 'stale-temp-removed', host: '-', dir: o.dir, files: stale.files.length, bytes: stale.bytes });
    try {
      if (o.netconsolePort !== undefined && o.netconsolePort !== null) {
        s.nc = new NetconsoleCollector({ dir: o.dir, disk: s.disk, onEvent: (e) => s.emit(e), maxFragmentsPerRecord: o.maxFragmentsPerRecord,
          onRecord: syslog ? (rec, from, frags) => syslog.forwardNetconsole(rec, from, frags) : undefined });
        const nc = s.nc;
        // The engine's batch is the unit of writing: records wait in nc until the batch's end, then one writev a host.
        const engine = listen(o.netconsolePort, o.bind, 'netconsole', { handle: (msg, from) => nc.add(msg, from), flush: () => nc.flush() }, (err) => s.receiverError(err), s.received.netconsole);
        s.engines.push({ proto: 'netconsole', engine });
        s.ports.netconsole = engine.handle.port;
        s.familyWarning ??= engine.handle.familyWarning;
      }
      if (s.oops) {
        const oops = s.oops;
        const engine = listen(o.oopsPort!, o.bind, 'netoops', { handle: (msg, from) => oops.handle(msg, from) }, (err) => s.receiverError(err), s.received.netoops);
        s.engines.push({ proto: 'netoops', engine });
        s.ports.oops = engine.handle.port;
        s.familyWarning ??= engine.handle.familyWarning;
      }
    } catch (err) {
      await s.close();
      throw err;
    }
    for (const { engine } of s.engines) {
      void engine.ended.then((end) => { if (end) s.emit({ event: 'socket-error', host: '-', error: end.message }); });
    }
    s.dropTimer = setInterval(() => s.reportDrops(), o.dropReportMs ?? 10_000);
    s.dropTimer.unref();
    return s;
  }

  /** A receiver bug must not take the collector down: report and keep listening. */
  private receiverError(err: unknown): void {
    this.emit({ event: 'receiver-error', host: '-', error: (err as Error).message });
  }

  private emit(e: CollectEvent | OopsEvent): void {
    if (e.event === 'new-host') {
      if (this.hosts.has(e.host)) return;
      this.hosts.add(e.host);
    }
    this.onEvent(e as CollectEvent);
    // After the event that names the files: the hook's own event follows the report's.
    if (e.event === 'dump-complete' && this.hook) this.hook.run([String(e.file), typeof e.sidecar === 'string' ? e.sidecar : '']);
  }

  /** Emits a `dropped` event per protocol whose drop counters changed since the last report. */
  reportDrops(): void {
    if (this.oops) {
      const o = this.oops;
      this.reportDropsOf('netoops', { ...o.drops, socket_overflow: this.socketDrops('netoops') },
        { buffered_bytes: o.bufferedBytes, open_dumps: o.stats.openDumps, queued_writes: o.stats.queuedWrites });
    }
    if (this.nc) {
      const p = this.nc.pending;
      this.reportDropsOf('netconsole', { ...this.nc.drops, socket_overflow: this.socketDrops('netconsole') }, { open_records: p.records, open_bytes: p.bytes });
    }
  }

  /** Source addresses seen so far (both protocols). */
  get hostsSeen(): number {
    return this.hosts.size;
  }

  /** Datagrams the kernel dropped because the protocol's socket buffer was full (collect fell behind). */
  socketDrops(proto: 'netconsole' | 'netoops'): number {
    return this.engines.find((x) => x.proto === proto)?.engine.stats().ownDrops ?? 0;
  }

  private reportDropsOf(proto: string, drops: Record<string, number>, state: Record<string, number>): void {
    const key = JSON.stringify(drops);
    if (key === this.lastDrops[proto]) return;
    this.lastDrops[proto] = key;
    const nonzero = Object.fromEntries(Object.entries(drops).filter(([, v]) => v > 0));
    if (Object.keys(nonzero).length === 0) return;
    this.emit({ event: 'dropped', host: '-', proto, ...nonzero, ...state });
  }

  /**
   * After a log rotation (SIGHUP): the netconsole host logs are closed and opened again by name at their next record,
   * so records go to the new files. Oops reports need nothing: each is a file of its own. Emits `logs-reopened`.
   */
  reopenLogs(): void {
    const closed = this.nc?.reopen() ?? 0;
    this.emit({ event: 'logs-reopened', host: '-', closed });
  }

  async close(): Promise<void> {
    if (this.dropTimer) clearInterval(this.dropTimer);
    // Each engine hands over what it still holds before it ends: those datagrams are handled before the receivers close.
    await Promise.all(this.engines.map((x) => x.engine.stop()));
    if (this.oops) await this.oops.close();
    if (this.nc) await this.nc.close();
    this.syslog?.close();
    this.reportDrops();
    // The last reports' hooks too: each ends by its time limit at the latest.
    if (this.hook) await this.hook.close();
  }
}
