/**
 * `--metrics [IP:]PORT`: the receivers' counters in Prometheus text format at http://IP:PORT/metrics, for collect,
 * netdump-server and sink --serve. prom-client (the maintained Prometheus client) writes the exposition format and
 * holds the registry; node:http serves it.
 *
 * Nothing is counted twice: every metric is read from the counters the receivers already keep (their stats, drop
 * reasons, the receive engines' kernel drop counts) when Prometheus scrapes (prom-client's collect()), so the hot
 * receive path pays nothing for metrics. Each process gets its own Registry, never prom-client's global one, so a
 * library user can run two receivers with metrics in one process. Every name starts with `rawpoll_`.
 */
import http from 'node:http';
import net from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { RuntimeError, UsageError } from '../errors.js';
import type { HookRunner } from './hook.js';
import type { CollectServer } from './collect.js';
import type { NetdumpServer } from './netdumpd.js';
import type { ServeTotals, TrialServer } from './serve.js';

export interface MetricsAddress {
  /** undefined: every address. */
  host?: string;
  port: number;
}

/** `--metrics [IP:]PORT` → where to serve (no IP: every address). IPv6 in brackets: [::1]:9100. UsageError naming it. */
export function parseMetricsAddress(v: string, what = '--metrics'): MetricsAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]:|([0-9.]+):)?(\d{1,5})$/.exec(String(v).trim());
  const bad = () => new UsageError(`bad ${what} '${v}': expected PORT (every address) or IP:PORT (that address only), ` +
    'like 9100, 10.0.0.9:9100 or [::1]:9100; PORT 1-65535');
  if (!m) throw bad();
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw bad();
  if (host !== undefined && net.isIP(host) === 0) throw bad();
  return { host, port };
}

type Labels = Record<string, string>;
/** What a read-at-scrape metric reports: one value, or one per label set. */
type Reading = number | [Labels, number][];

function put(m: Counter<string> | Gauge<string>, r: Reading): void {
  m.reset();
  if (typeof r === 'number') {
    if (m instanceof Counter) m.inc(r);
    else m.set(r);
    return;
  }
  for (const [labels, v] of r) {
    if (m instanceof Counter) m.inc(labels, v);
    else m.set(labels, v);
  }
}

/**
 * A per-process registry with the process metrics (RSS, fds, event-loop lag: prefixed `rawpoll_` too) and helpers
 * that define a counter or gauge read from a receiver when scraped.
 */
export class ReceiverMetrics {
  readonly registry = new Registry();

  constructor(o: { processMetrics?: boolean } = {}) {
    if (o.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'rawpoll_' });
  }

  /** A counter whose value is the receiver's own running total (`read` is called at each scrape). */
  counter(name: string, help: string, labelNames: string[], read: () => Reading): void {
    new Counter({ name, help, labelNames, registers: [this.registry], collect() { put(this, read()); } });
  }

  gauge(name: string, help: string, labelNames: string[], read: () => Reading): void {
    new Gauge({ name, help, labelNames, registers: [this.registry], collect() { put(this, read()); } });
  }

  /** The hook runner's results (--hook): how hooks ended, and how many run now. */
  hooks(get: () => HookRunner | null): void {
    this.counter('rawpoll_hooks_total', 'Hook (--hook) runs by how they ended: ok (exit 0), failed (other exit or ' +
      'signal), timeout (killed at --hook-timeout), skipped (too many running), error (could not start)', ['result'],
      () => Object.entries(get()?.counts ?? {}).map(([result, n]) => [{ result }, n]));
    this.gauge('rawpoll_hooks_running', 'Hooks (--hook) running now', [], () => get()?.running ?? 0);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * GET /metrics on node:http. start() resolves once listening; a bind failure (address in use, not an address of this
 * host, no permission) is a RuntimeError naming the address (exit 1), so a receiver checks it before it says
 * it listens.
 */
export class MetricsServer {
  private readonly server: http.Server;

  private constructor(readonly metrics: ReceiverMetrics, readonly where: MetricsAddress) {
    this.server = http.createServer((req, res) => void this.answer(req, res));
    // A scraper is one client every few seconds: a handful of connections is plenty, and bounds what a stranger holds.
    this.server.maxConnections = 16;
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 5_000;
  }

  static async start(metrics: ReceiverMetrics, where: MetricsAddress): Promise<MetricsServer> {
    const s = new MetricsServer(metrics, where);
    const shown = `${where.host === undefined ? '*' : net.isIPv6(where.host) ? `[${where.host}]` : where.host}:${where.port}`;
    await new Promise<void>((res, rej) => {
      s.server.once('error', (e: NodeJS.ErrnoException) => {
        const why = e.code === 'EADDRINUSE' ? 'already in use (choose another --metrics port)'
          : e.code === 'EADDRNOTAVAIL' ? 'no interface here has that address'
          : e.code === 'EACCES' ? 'no permission (ports below 1024 need root)'
          : e.code ?? e.message;
        rej(new RuntimeError(`cannot serve --metrics on TCP ${shown}: ${why}`));
      });
      s.server.listen({ host: where.host, port: where.port, exclusive: true }, () => res());
    });
    s.server.removeAllListeners('error');
    s.server.on('error', () => {}); // accept errors (EMFILE) after listening must not end the receiver
    return s;
  }

  /** Where it listens (the kernel's port when 0 was asked). */
  address(): { address: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { address: a.address, port: a.port };
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('use GET\n');
      return;
    }
    try {
      const body = await this.metrics.text();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(e as Error).message}\n`);
    }
  }

  close(): Promise<void> {
    return new Promise((res) => {
      this.server.close(() => res());
      this.server.closeAllConnections();
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What each receiver exposes. The same names across receivers, told apart by `proto` (netconsole, netoops, netdump,
// pktgen); `get` returns null until the receiver has started (the HTTP server is bound first, to fail early).

const HELP = {
  datagrams: 'UDP datagrams received',
  bytes: 'UDP payload bytes received',
  drops: 'Datagrams (or, for netdump, heralds and sessions) refused or given up by the receiver, by reason',
  socket: 'Datagrams the kernel dropped because the receiver\'s socket buffer or capture ring was full',
  hosts: 'Distinct source addresses seen',
  written: 'Bytes written to files in the output directory',
};

function byReason(proto: string, drops: Record<string, number>): [Labels, number][] {
  return Object.entries(drops).map(([reason, n]) => [{ proto, reason }, n]);
}

/** `rawpoll collect`: netconsole and netoops. */
export function collectMetrics(m: ReceiverMetrics, get: () => CollectServer | null): void {
  const protos = (f: (s: CollectServer, p: 'netconsole' | 'netoops') => number | null): () => Reading => () => {
    const s = get();
    if (!s) return [];
    const out: [Labels, number][] = [];
    if (s.nc) out.push([{ proto: 'netconsole' }, f(s, 'netconsole') ?? 0]);
    if (s.oops) out.push([{ proto: 'netoops' }, f(s, 'netoops') ?? 0]);
    return out;
  };
  m.counter('rawpoll_datagrams_received_total', HELP.datagrams, ['proto'], protos((s, p) => s.received[p].datagrams));
  m.counter('rawpoll_bytes_received_total', HELP.bytes, ['proto'], protos((s, p) => s.received[p].bytes));
  m.counter('rawpoll_drops_total', `${HELP.drops} (the 'dropped' events' reasons)`, ['proto', 'reason'], () => {
    const s = get();
    return [...(s?.nc ? byReason('netconsole', s.nc.drops) : []), ...(s?.oops ? byReason('netoops', s.oops.drops) : [])];
  });
  m.counter('rawpoll_socket_drops_total', `${HELP.socket} ('socket_overflow' in the 'dropped' events)`, ['proto'], protos((s, p) => s.socketDrops(p)));
  m.gauge('rawpoll_hosts_seen', `${HELP.hosts} (either protocol)`, [], () => get()?.hostsSeen ?? 0);
  m.counter('rawpoll_bytes_written_total', `${HELP.written} (netconsole logs; netoops .log and sidecar files)`, ['proto'],
    protos((s, p) => (p === 'netconsole' ? s.nc?.stats.bytesWritten : s.oops?.stats.bytesWritten) ?? 0));
  m.counter('rawpoll_dumps_completed_total', 'Dumps written complete (netoops: every chunk of the report)', ['proto'],
    () => { const o = get()?.oops; return o ? [[{ proto: 'netoops' }, o.stats.dumpsComplete]] : []; });
  m.counter('rawpoll_dumps_failed_total', 'Dumps that ended incomplete, by how (netoops: written as partial)', ['proto', 'reason'],
    () => { const o = get()?.oops; return o ? [[{ proto: 'netoops', reason: 'partial' }, o.stats.dumpsPartial]] : []; });
  m.hooks(() => get()?.hook ?? null);
}

/** `rawpoll netdump-server`. */
export function netdumpMetrics(m: ReceiverMetrics, get: () => NetdumpServer | null): void {
  const one = (f: (s: NetdumpServer) => number | null): () => Reading => () => {
    const s = get();
    return s ? [[{ proto: 'netdump' }, f(s) ?? 0]] : [];
  };
  m.counter('rawpoll_datagrams_received_total', `${HELP.datagrams} (herald port and session ports)`, ['proto'], one((s) => s.stats.datagrams));
  m.counter('rawpoll_bytes_received_total', HELP.bytes, ['proto'], one((s) => s.stats.bytes));
  m.counter('rawpoll_drops_total', `${HELP.drops} (the 'Drops since start' reasons)`, ['proto', 'reason'],
    () => { const s = get(); return s ? byReason('netdump', s.drops as unknown as Record<string, number>) : []; });
  m.counter('rawpoll_socket_drops_total', `${HELP.socket} (herald and session sockets, from /proc/self/net/udp)`, ['proto'], one((s) => s.socketDrops()));
  m.gauge('rawpoll_hosts_seen', `${HELP.hosts} (clients that sent dump data)`, [], () => get()?.hostsSeen ?? 0);
  m.counter('rawpoll_bytes_written_total', `${HELP.written} (vmcore and key files)`, ['proto'], one((s) => s.stats.bytesWritten));
  m.counter('rawpoll_dumps_completed_total', 'Dumps received whole (FINISHED, written, renamed to vmcore.<host>.<n>)', ['proto'],
    one((s) => s.stats.dumps.complete));
  m.counter('rawpoll_dumps_failed_total', 'Dumps that ended incomplete, by how: timeout (client silent), error (write ' +
    'error), stopped (server stopped)', ['proto', 'reason'], () => {
    const s = get();
    return s ? (['timeout', 'error', 'stopped'] as const).map((reason) => [{ proto: 'netdump', reason }, s.stats.dumps[reason]]) : [];
  });
  m.gauge('rawpoll_netdump_sessions_open', 'Sessions open now (with data, or heralded and waiting for it)', [], () => get()?.active ?? 0);
  m.hooks(() => get()?.hook ?? null);
}

/** `rawpoll sink --serve`: every trial's datagrams, ended and running. */
export function serveMetrics(m: ReceiverMetrics, get: () => TrialServer | null): void {
  const one = (f: (t: ServeTotals) => number): () => Reading => () => {
    const s = get();
    return s ? [[{ proto: 'pktgen' }, f(s.totals())]] : [];
  };
  m.counter('rawpoll_datagrams_received_total', `${HELP.datagrams} on trial ports (pktgen or not)`, ['proto'], one((t) => t.datagrams));
  m.counter('rawpoll_bytes_received_total', `${HELP.bytes} (of datagrams accounted in flows)`, ['proto'], one((t) => t.bytes));
  m.counter('rawpoll_drops_total', 'Datagrams on trial ports not accounted, by reason: non-pktgen (no pktgen header), ' +
    'flows-over-budget, flows-evicted (--max-flows)', ['proto', 'reason'], () => {
    const s = get();
    return s ? byReason('pktgen', s.totals().refused) : [];
  });
  m.counter('rawpoll_socket_drops_total', `${HELP.socket} (a running capture trial's count is added when it ends)`, ['proto'], one((t) => t.ownDrops));
  m.gauge('rawpoll_hosts_seen', `${HELP.hosts} (sources of flows in any trial)`, [], () => get()?.totals().hosts ?? 0);
  m.counter('rawpoll_sink_trials_total', 'Trials opened since start', [], () => get()?.trialsServed ?? 0);
  m.gauge('rawpoll_sink_trials_open', 'Trials open now (running, or ended and waiting for their client\'s close)', [], () => get()?.openTrials ?? 0);
  m.gauge('rawpoll_sink_clients', 'Control connections now', [], () => get()?.clients ?? 0);
}
