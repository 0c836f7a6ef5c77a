import * as dgram from 'node:dgram';
import { promises as fsp } from 'node:fs';
import { RuntimeError } from '../errors.js';
import { OopsCollector, OopsEvent, OOPS_DEFAULTS, DiskWatch, removeStaleTemps } from './oopscollect.js';
import { NetconsoleCollector } from './nclog.js';

/**
 * `rawpoll collect`: ordinary UDP sockets (receiving needs no raw access) feeding the netconsole and netoops
 * receivers, one event stream out. Events: new-host (once per source address, whichever protocol saw it first),
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
  onEvent: (e: CollectEvent) => void;
}

function bindSocket(sock: dgram.Socket, port: number, address: string | undefined, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onErr = (err: NodeJS.ErrnoException) => {
      reject(new RuntimeError(`cannot listen on UDP ${address ?? '0.0.0.0'}:${port} for ${what}: ${err.code ?? err.message}` +
        (err.code === 'EADDRINUSE' ? ' (another collector running?)' : err.code === 'EADDRNOTAVAIL' ? ' (--bind must be an address of this host)' : '')));
    };
    sock.once('error', onErr);
    sock.bind({ port, address, exclusive: true }, () => {
      sock.off('error', onErr);
      resolve(sock.address().port);
    });
  });
}

export class CollectServer {
  readonly ports: { netconsole: number | null; oops: number | null } = { netconsole: null, oops: null };
  readonly oops: OopsCollector | null = null;
  nc: NetconsoleCollector | null = null;
  readonly disk: DiskWatch;
  private socks: dgram.Socket[] = [];
  private hosts = new Set<string>();
  private lastDrops: Record<string, string> = {};
  private dropTimer: NodeJS.Timeout | null = null;
  private readonly onEvent: (e: CollectEvent) => void;

  private constructor(private readonly o: CollectOptions) {
    this.onEvent = o.onEvent;
    this.disk = new DiskWatch(o.dir, (e) => this.emit(e));
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
    await fsp.mkdir(o.dir, { recursive: true });
    // A collector killed mid-write left hidden temp files that hold space nobody can see: remove them first.
    const stale = await removeStaleTemps(o.dir);
    const s = new CollectServer(o);
    if (stale.files.length > 0) s.emit({ event: 'stale-temp-removed', host: '-', dir: o.dir, files: stale.files.length, bytes: stale.bytes });
    try {
      if (o.netconsolePort !== undefined && o.netconsolePort !== null) {
        s.nc = new NetconsoleCollector({ dir: o.dir, disk: s.disk, onEvent: (e) => s.emit(e), maxFragmentsPerRecord: o.maxFragmentsPerRecord });
        const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
        s.socks.push(sock);
        s.ports.netconsole = await bindSocket(sock, o.netconsolePort, o.bind, 'netconsole');
        sock.on('message', (msg, rinfo) => s.safe(() => s.nc!.handle(msg, rinfo)));
      }
      if (s.oops) {
        // A dump is a burst of ~1.4 KB datagrams x retransmits: a large receive buffer keeps the kernel from dropping.
        const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
        s.socks.push(sock);
        s.ports.oops = await bindSocket(sock, o.oopsPort!, o.bind, 'netoops');
        sock.on('message', (msg, rinfo) => s.safe(() => s.oops!.handle(msg, rinfo)));
      }
    } catch (err) {
      await s.close();
      throw err;
    }
    for (const sock of s.socks) sock.on('error', (err) => s.emit({ event: 'socket-error', host: '-', error: err.message }));
    s.dropTimer = setInterval(() => s.reportDrops(), o.dropReportMs ?? 10_000);
    s.dropTimer.unref();
    return s;
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // A receiver bug must not take the collector down: report and keep listening.
      this.emit({ event: 'receiver-error', host: '-', error: (err as Error).message });
    }
  }

  private emit(e: CollectEvent | OopsEvent): void {
    if (e.event === 'new-host') {
      if (this.hosts.has(e.host)) return;
      this.hosts.add(e.host);
    }
    this.onEvent(e as CollectEvent);
  }

  /** Emits a `dropped` event per protocol whose drop counters changed since the last report. */
  reportDrops(): void {
    if (this.oops) {
      const o = this.oops;
      this.reportDropsOf('netoops', o.drops, { buffered_bytes: o.bufferedBytes, open_dumps: o.stats.openDumps, queued_writes: o.stats.queuedWrites });
    }
    if (this.nc) {
      const p = this.nc.pending;
      this.reportDropsOf('netconsole', this.nc.drops, { open_records: p.records, open_bytes: p.bytes });
    }
  }

  private reportDropsOf(proto: string, drops: Record<string, number>, state: Record<string, number>): void {
    const key = JSON.stringify(drops);
    if (key === this.lastDrops[proto]) return;
    this.lastDrops[proto] = key;
    const nonzero = Object.fromEntries(Object.entries(drops).filter(([, v]) => v > 0));
    if (Object.keys(nonzero).length === 0) return;
    this.emit({ event: 'dropped', host: '-', proto, ...nonzero, ...state });
  }

  async close(): Promise<void> {
    if (this.dropTimer) clearInterval(this.dropTimer);
    await Promise.all(this.socks.map((s) => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } })));
    this.socks = [];
    if (this.oops) await this.oops.close();
    if (this.nc) await this.nc.close();
    this.reportDrops();
  }
}
