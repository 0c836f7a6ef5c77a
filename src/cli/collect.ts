import { join } from 'node:path';
import { Command } from 'commander';
import { LinkGoneError, UsageError } from '../errors.js';
import { formatIpAddress, parseIpAddress } from '../wire/endpoint.js';
import { CollectServer, CollectEvent } from '../rx/collect.js';
import { OOPS_DEFAULTS } from '../rx/oopscollect.js';
import { NETCONSOLE_DEFAULTS } from '../rx/nclog.js';
import { SYSLOG_DEFAULT_PATH, SYSLOG_MAX_BYTES } from '../rx/syslog.js';
import { MetricsServer, ReceiverMetrics, collectMetrics, parseMetricsAddress } from '../rx/metrics.js';
import { HOOK_DEFAULTS, checkHookProgram, parseHookTimeout } from '../rx/hook.js';
import { addDropOption, addWatchOption, checkWatchedLinks, checkWritableDir, intArg, interruptedExitCode, relinquishPrivileges, untilStopped } from './common.js';

interface CollectFlags {
  dir: string;
  netconsole?: string | boolean;
  oops?: string | boolean;
  bind?: string;
  idle: string;
  maxDumps?: string;
  maxDumpsPerHost?: string;
  maxDumpBytes?: string;
  maxBytes?: string;
  maxQueuedWrites?: string;
  maxFragments?: string;
  syslog?: string | boolean;
  json?: boolean;
  iface: string[];
  metrics?: string;
  hook?: string;
  hookTimeout: string;
}

function portFlag(v: string | boolean | undefined, def: number, what: string): number | null {
  if (v === undefined || v === false) return null;
  if (v === true) return def;
  return intArg(v, what, 0, 65535)!;
}

/** bytesWritten → bytes_written: the event stream's keys are snake_case. */
function snakeKeys(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]));
}

/** One line per event: `time event host key=value …`, or the object itself with --json. */
export function formatEvent(e: CollectEvent, json: boolean, now = new Date()): string {
  if (json) return JSON.stringify({ time: now.toISOString(), ...e });
  const rest = Object.entries(e)
    .filter(([k, v]) => k !== 'event' && k !== 'host' && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/[\s"]/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
  return `${now.toISOString()} ${e.event} ${e.host}${rest ? ' ' + rest : ''}`;
}

export function register(program: Command): void {
  const cmd = program
    .command('collect')
    .summary('receive netconsole logs and netoops crash reports into a directory (ordinary UDP sockets)')
    .description('Receive netconsole logs and netoops crash reports on ordinary UDP sockets and write them to a directory\n' +
      '(no root needed for ports >= 1024). One line per event on stdout: new-host, dump-complete, dump-partial,\n' +
      'dump-dropped, dropped, disk-full, write-resumed. Runs until SIGINT/SIGTERM, then writes open dumps out as partial,\n' +
      'prints a summary line and exits 0. Anyone can send to these ports: every budget below is counted when exceeded.')
    .requiredOption('-d, --dir <DIR>', 'where logs and dumps go (created if missing)')
    .option('--netconsole [PORT]', 'receive netconsole on this UDP port (kernel default target port: 6666)')
    .option('--oops [PORT]', 'receive netoops on this UDP port (netoops uses 2004)')
    .option('--bind <IP>', 'listen on this local address only, IPv4 or IPv6 (default: all: one dual-stack socket a port takes IPv6 and IPv4, as netconsd)')
    .option('--idle <S>', 'write an incomplete dump out (as partial) after S seconds without a new chunk', String(OOPS_DEFAULTS.idleMs / 1000))
    .option('--max-dumps <N>', `dumps reassembled at once; beyond, one gives way: a one-chunk dump first (dropped, evicted_unconfirmed), else the least recently active (written as partial) (default ${OOPS_DEFAULTS.maxOpenDumps})`)
    .option('--max-dumps-per-host <N>', `dumps reassembled at once per source address; beyond, that host's own least recently active dump gives way, one-chunk dumps first (default ${OOPS_DEFAULTS.maxDumpsPerHost})`)
    .option('--max-dump-bytes <N>', `largest dump accepted: datagrams announcing more than N/1024 chunks are dropped as too_big (default ${OOPS_DEFAULTS.maxBytesPerDump})`)
    .option('--max-bytes <N>', `reassembly memory for all dumps together, and again for dumps queued for writing (log, packet table and header counted); beyond, a dump gives way as with --max-dumps, or a write is dropped (backlog) (default ${OOPS_DEFAULTS.maxTotalBytes})`)
    .option('--max-queued-writes <N>', `dumps waiting to be written (complete ones first); full: a partial dump is dropped (backlog), a complete one takes the place of the newest queued partial (default ${OOPS_DEFAULTS.maxQueuedWrites})`)
    .option('--syslog [PATH]', `also forward each netconsole record to the local syslog socket as RFC 5424 (PRI from the record's facility and level, HOSTNAME the sender, APP-NAME kernel, MSGID netconsole, SD rawpoll@32473 with seq, usec, src, release, userdata, sysdata; at most ${SYSLOG_MAX_BYTES} bytes) (default ${SYSLOG_DEFAULT_PATH}); a busy daemon's refusals are dropped (syslog_busy), never waited for`)
    .option('--max-fragments <N>', `ncfrag pieces one netconsole record may take; further pieces are dropped (too_many_fragments) (default ${NETCONSOLE_DEFAULTS.maxFragmentsPerRecord})`)
    .option('--json', 'one JSON object per line instead of text')
    .option('--metrics <[IP:]PORT>', 'serve Prometheus metrics at http://IP:PORT/metrics (no IP: every address)')
    .option('--hook <PROG>', 'run PROG after each complete oops report, with the .log and sidecar .json paths as arguments')
    .option('--hook-timeout <S>', 'kill a --hook still running after S seconds', String(HOOK_DEFAULTS.timeoutSec));
  addDropOption(cmd, 'once the sockets are bound (for a port below 1024; others need no root)');
  addWatchOption(cmd)
    .addHelpText('after', `
Files (all written to a temp name and renamed, so a file under its final name is always whole):
  oops-<host>-<bootid>-<dumpid>[-N].log    the log, oldest byte first (chunk padding removed)
  oops-<host>-<bootid>-<dumpid>[-N].json   every header field, complete, missing_packet_no, gaps (byte offsets in .log)
  netconsole: one log per source host (see the netconsole receiver)
netoops datagrams are grouped by (source address, boot_id, dump_id); the sender's retransmit rounds are recognised
and dropped. Garbage never stops the collector: drops are counted by reason and reported in 'dropped' lines (per
protocol, when the counts changed, at most every 10 s, and at the end) and in the summary:
  netoops     truncated, version, offsets, packet_no (malformed), too_big (over --max-dump-bytes), conflict,
              duplicate, late (retransmits), backlog (write queue full: --max-queued-writes, --max-bytes; each also
              a 'dump-dropped' line), evicted_unconfirmed (a dump of one chunk of several that gave way)
  netconsole  too_big (ncfrag total over ${NETCONSOLE_DEFAULTS.maxRecordBytes}), bad_range, too_many_fragments (--max-fragments),
              evicted (over ${NETCONSOLE_DEFAULTS.maxOpenFragments} records or ${NETCONSOLE_DEFAULTS.maxBytesPerHost} bytes per host in reassembly), superseded, shutdown, error,
              syslog_busy / syslog_down / syslog_error (--syslog: the daemon's queue was full / it was gone / other;
              the record is in the log all the same); an ncfrag piece refused on arrival is also a 'fragment-rejected'
              line (host, port, seq, code, reason), pieces of a record given up a 'fragments-dropped' line

Budgets under a flood: each datagram costs bounded memory and CPU; the write queue is bounded in dumps and bytes, and
a complete dump is written before any partial one. A dump with one chunk is on probation: over --max-dumps or
--max-dumps-per-host it gives way first, and is dropped, not written (evicted_unconfirmed) — a file pair per forged
datagram would let a flood fill the disk; a real dump's first chunk comes again in the sender's next round. A dump
with two chunks or more gives way only when no dump (of that host, for --max-dumps-per-host) is on probation, and is
then written as partial (reason evicted).
Dumps that go idle (--idle) or are open at the end are written as partial whatever their size.

Full disk: a write that fails leaves no temp file and no half netconsole line behind. The first failure prints one
'disk-full' line (other errors: 'write-error') naming the file and the reason; what is lost after it is only counted,
until a write succeeds again: then one 'write-resumed' line says how many dumps/records/bytes were lost. Nothing to
restart: free space and the collector carries on. Temp files (.<name>.tmp-<pid>) that a killed collector left in
--dir are removed at start ('stale-temp-removed').

Link outages: the sockets keep listening through them; 'link-down' and 'link-up' (with downMs) lines report each.

Stop: SIGINT or SIGTERM writes open dumps out as partial (reason shutdown), prints the 'summary' line (with
interrupted=SIGINT|SIGTERM) and exits 0; a second signal exits at once (130/143).

Log rotation: SIGHUP (logrotate's postrotate, systemctl reload) writes out what is waiting, closes every host's
netconsole log and opens it again by name at its next record ('logs-reopened' line): rename the logs, then send it.

Metrics (--metrics): rawpoll_datagrams_received_total, _bytes_received_total, _drops_total{reason} (the 'dropped'
reasons), _socket_drops_total, _hosts_seen, _bytes_written_total, _dumps_completed_total, _dumps_failed_total, by
proto (netconsole, netoops), read from the collector's own counters at each scrape.
Hook (--hook PROG): after each dump-complete, PROG REPORT.log SIDECAR.json ('' if the sidecar failed), without a
shell, its output on stderr; at most ${HOOK_DEFAULTS.maxConcurrent} at once (another is skipped), killed with what it
started after --hook-timeout; each ends in a 'hook' line (result ok, failed, timeout, skipped or error). A PROG that
is missing or not executable is refused at start (exit 2).

Examples:
  rawpoll collect --dir /var/crash/rawpoll --netconsole 6666 --oops 2004
  rawpoll collect --dir /tmp/c --oops --bind 10.0.0.9 --idle 5 --json`)
    .action(async (f: CollectFlags) => {
      const netconsolePort = portFlag(f.netconsole, 6666, '--netconsole');
      const oopsPort = portFlag(f.oops, 2004, '--oops');
      if (netconsolePort === null && oopsPort === null) {
        throw new UsageError('nothing to receive: give --netconsole [PORT] and/or --oops [PORT]');
      }
      if (netconsolePort !== null && netconsolePort === oopsPort && netconsolePort !== 0) {
        throw new UsageError(`--netconsole and --oops both name UDP port ${netconsolePort}: give each its own port (defaults: netconsole 6666, netoops 2004)`);
      }
      // Normalised (RFC 5952 for IPv6): the listening line and the link watch compare it with the interfaces' addresses.
      if (f.bind !== undefined) f.bind = formatIpAddress(parseIpAddress(f.bind, '--bind'));
      const syslog = f.syslog === undefined || f.syslog === false ? undefined : f.syslog === true ? SYSLOG_DEFAULT_PATH : f.syslog;
      if (syslog !== undefined && netconsolePort === null) throw new UsageError(`--syslog ${syslog} forwards netconsole records: add --netconsole [PORT]`);
      checkWatchedLinks(f.iface);
      const idle = Number(f.idle);
      if (!(Number.isFinite(idle) && idle > 0 && idle <= 86400)) throw new UsageError(`bad --idle '${f.idle}': expected seconds, 0 < S <= 86400`);
      const limits = {
        maxOpenDumps: intArg(f.maxDumps, '--max-dumps', 1, 100000),
        maxDumpsPerHost: intArg(f.maxDumpsPerHost, '--max-dumps-per-host', 1, 100000),
        maxBytesPerDump: intArg(f.maxDumpBytes, '--max-dump-bytes', 1024, 2 ** 31),
        maxTotalBytes: intArg(f.maxBytes, '--max-bytes', 1024, 2 ** 40),
        maxQueuedWrites: intArg(f.maxQueuedWrites, '--max-queued-writes', 1, 100000),
        maxFragmentsPerRecord: intArg(f.maxFragments, '--max-fragments', 1, 262144),
      };
      const metricsAt = f.metrics !== undefined ? parseMetricsAddress(f.metrics) : undefined;
      const hook = f.hook !== undefined ? checkHookProgram(f.hook) : undefined;
      const hookTimeoutMs = Math.round(parseHookTimeout(f.hookTimeout) * 1000);
      // Last, after every flag: the directory (created if missing, by the server) must take files now.
      checkWritableDir(f.dir, '--dir', { create: true });
      const json = !!f.json;
      const out = (e: CollectEvent) => process.stdout.write(formatEvent(e, json) + '\n');
      // Bound before the sockets: a --metrics port in use fails the start (exit 1), not a scrape later.
      let live: CollectServer | null = null;
      let metrics: MetricsServer | null = null;
      if (metricsAt) {
        const m = new ReceiverMetrics();
        collectMetrics(m, () => live);
        metrics = await MetricsServer.start(m, metricsAt);
      }
      const server = await CollectServer.start({
        dir: f.dir,
        bind: f.bind,
        netconsolePort,
        oopsPort,
        syslog,
        idleMs: Math.round(idle * 1000),
        ...limits,
        hook, hookTimeoutMs,
        onEvent: out,
      }).catch(async (e: unknown) => { await metrics?.close(); throw e; });
      live = server;
      await relinquishPrivileges(cmd.getOptionValue('relinquishPrivileges'), async () => { await server.close(); await metrics?.close(); }, { own: [join(f.dir, 'netconsole')], writable: [f.dir] });
      // SIGHUP, as logrotate's postrotate or the unit's ExecReload sends it: reopen the host logs (Node would exit).
      const onHup = () => server.reopenLogs();
      process.on('SIGHUP', onHup);
      out({ event: 'listening', host: f.bind ?? (server.familyWarning ? '0.0.0.0' : '::'), netconsole: server.ports.netconsole ?? undefined,
        oops: server.ports.oops ?? undefined, dir: f.dir, ...(server.familyWarning ? { warning: server.familyWarning } : {}) });
      // Running until stopped is this command's job: a stop exits 0 after the summary (common.ts); a link named with
      // -i that is deleted ends the run too, with exit 1 (README, "When the link goes down").
      const { sig, gone } = await untilStopped(f.iface, f.bind, (e) => out({ host: '-', ...e } as CollectEvent));
      process.removeListener('SIGHUP', onHup);
      await server.close();
      await metrics?.close();
      const o = server.oops;
      const nonzero = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).filter(([, v]) => v > 0));
      const failures = nonzero(server.disk.totals);
      out({
        event: 'summary', host: '-', interrupted: sig, ...(gone ? { stopped: `interface ${gone} disappeared` } : {}),
        ...(o ? { oops_datagrams: o.stats.datagrams, dumps_complete: o.stats.dumpsComplete, dumps_partial: o.stats.dumpsPartial, oops_drops: nonzero({ ...o.drops, socket_overflow: server.socketDrops('netoops') }) } : {}),
        ...(server.syslog ? { syslog: { path: server.syslog.path, ...nonzero(server.syslog.stats) } } : {}),
        // snake_case as every other key of the event stream (the library's stats object keeps its camelCase).
        ...(server.nc ? { netconsole: nonzero(snakeKeys(server.nc.stats as unknown as Record<string, number>)), netconsole_drops: nonzero({ ...server.nc.drops, socket_overflow: server.socketDrops('netconsole') }) } : {}),
        ...(Object.keys(failures).length ? { write_failures: { ...failures, failing_now: server.disk.failing } } : {}),
        ...(server.hook ? { hooks: nonzero(server.hook.counts) } : {}),
      });
      if (gone) throw new LinkGoneError(gone);
      process.exitCode = interruptedExitCode(sig!, false);
    });
}
