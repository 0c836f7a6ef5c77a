import { Command } from 'commander';
import { parseIpv4, formatIpv4, parsePort } from '../wire/addr.js';
import { LinkGoneError } from '../errors.js';
import { NETDUMP_EKCD_KEY_MAX, NETDUMP_PORT } from '../proto/netdump.js';
import { UsageError } from '../errors.js';
import {
  DEFAULT_HERALD_TIMEOUT_SEC, DEFAULT_MAX_DUMP_SIZE, DEFAULT_MAX_SESSIONS, MAX_DUMP_SIZE_LIMIT, MAX_SESSIONS_LIMIT,
  NetdumpServer, type DumpResult, type NetdumpDrops,
} from '../rx/netdumpd.js';
import { MetricsServer, ReceiverMetrics, netdumpMetrics, parseMetricsAddress } from '../rx/metrics.js';
import { HOOK_DEFAULTS, checkHookProgram, parseHookTimeout, type HookEvent } from '../rx/hook.js';
import { addDropOption, addWatchOption, checkWatchedLinks, checkWritableDir, eventWriter, intArg, interruptedExitCode, relinquishPrivileges, untilStopped } from './common.js';

interface ServerFlags {
  dir: string;
  bind?: string;
  port: string;
  timeout: string;
  maxDumpSize: string;
  heraldTimeout: string;
  maxSessions: string;
  statsInterval: string;
  json?: boolean;
  iface: string[];
  metrics?: string;
  hook?: string;
  hookTimeout: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('netdump-server')
    .summary('receive FreeBSD netdump kernel dumps (a netdumpd-compatible server)')
    .description('A netdumpd-compatible server: listens for netdump heralds on UDP 20023, gives each client its own\n' +
      'socket on a new port connected to client:20024, ACKs every valid message with its seqno, writes VMCORE data\n' +
      'at its offset into vmcore.<client>.<n>.incomplete and the decoded kernel dump header into info.<client>.<n>;\n' +
      'when FINISHED comes and all is written, renames the dump to vmcore.<client>.<n> and points\n' +
      'vmcore.<client>.last / info.<client>.last at it. A herald path (rawpoll netdump --path, FreeBSD\n' +
      'net.netdump.path) picks a subdirectory of --dir; it can never leave --dir.\n' +
      'Runs until SIGINT/SIGTERM; open sessions then end as "Dump incomplete: server stopped".')
    .requiredOption('--dir <DIR>', 'directory the dumps go into (must exist)')
    .option('--bind <IP>', 'listen on this address only (also the source of ACKs); default: all')
    .option('--port <PORT>', 'herald port', String(NETDUMP_PORT))
    .option('--timeout <SECONDS>', 'end a session that has had data after this long without a message (netdumpd: 600)', '600')
    .option('--max-dump-size <BYTES>', 'refuse (no ACK) data whose offset + length lies beyond this; suffixes K, M, G, T (powers of 1024)', '64G')
    .option('--herald-timeout <SECONDS>', 'end a session that has had no data this long after its herald, removing its ' +
      'files (a FreeBSD client sends data at once and gives up after ~12 s of retries)', String(DEFAULT_HERALD_TIMEOUT_SEC))
    .option('--max-sessions <N>', 'open sessions at most (each a socket and 2-3 files; 128 KiB more once data comes); ' +
      'over it the oldest without data gives way, or, if all have data, the herald gets no ACK', String(DEFAULT_MAX_SESSIONS))
    .option('--stats-interval <SECONDS>', 'print the drop counters this often when they changed (0: only at stop)', '60')
    .option('--json', 'one JSON object per line instead of log lines: {"event":"dump",…} per finished session, {"event":"write-error",…}, {"event":"drops",…}, {"event":"stop",…}')
    .option('--metrics <[IP:]PORT>', 'serve Prometheus metrics at http://IP:PORT/metrics (no IP: every address)')
    .option('--hook <PROG>', 'run PROG after each dump, complete or not, with netdumpd -i\'s arguments: ' +
      'REASON (success|timeout|error) CLIENT-IP HOSTNAME INFO-FILE VMCORE-FILE')
    .option('--hook-timeout <S>', 'kill a --hook still running after S seconds', String(HOOK_DEFAULTS.timeoutSec));
  addDropOption(cmd, 'once the herald socket is bound (for a port below 1024; others need no root)');
  addWatchOption(cmd)
    .addHelpText('after', `
Incomplete dumps: a dump keeps the name vmcore.<client>.<n>.incomplete unless it completed, so a dump cut short
(client timed out, write error, server stopped or killed) never looks whole. Its info file ends with a status
line: "Dump complete", "Dump incomplete: client timed out|server stopped", "Dump unsuccessful: <reason>", or
"Dump started" when the server died before the end. A new dump never reuses an index that has a vmcore.

Full disk: a write error (ENOSPC …) ends that session at once (the client stops getting ACKs and gives up); the
reason and the path are printed on stdout ("Dump from client … unsuccessful: write error @ offset … in …: ENOSPC …"),
in --json as the dump's "error", and as the info file's status line. What was received stays in the .incomplete
file; free space and the next dump is written normally.

Hostile traffic: offsets are u64 on the wire; a VMCORE or EKCD_KEY datagram whose offset + length lies beyond
--max-dump-size (default 64G = ${DEFAULT_MAX_DUMP_SIZE} bytes) is refused without an ACK and without touching
the file: the session goes on. Each dump's record counts them ("beyondMaxDumpSize"); the first per session is
logged. Size the limit above the RAM of your largest client: a real dump beyond it never completes.

Budgets (a herald is one datagram anyone can spoof; netdumpd held a socket, two files and a 128 KiB buffer per
herald for 600 s, so a few thousand spoofed heralds used up the open-file limit and real dumps failed). What is
refused or ended early is counted by reason: the first of each reason is logged, and a "Drops since start: …"
line ({"event":"drops",…} with --json) comes every --stats-interval if a count changed, and at stop.
  --max-sessions N      (default ${DEFAULT_MAX_SESSIONS}) open sessions. A session without data yet holds a socket and two files;
                        the 128 KiB buffer comes with its first data. A herald over it makes the oldest session
                        without data give way (heraldDisplaced); if all have data, it gets no ACK (maxSessions).
                        Only a session heralded 50 ms ago or more gives way (its client had time to answer).
  4 per client address  (fixed) the same rule per address (heraldDisplaced, sessionLimit).
  A herald naming a dump that is receiving data (same address, port and path) gets no ACK (heraldDuringDump):
                        a late retransmit or a spoof must not end it; after 10 s of silence it starts a new dump.
  --herald-timeout S    (default ${DEFAULT_HERALD_TIMEOUT_SEC}) a session with no data S seconds after its last herald ends and its files
                        (and directories its herald path made) are removed (heraldNoData); at once if its ACK comes
                        back unreachable (heraldUnreachable). Sessions that got no data never use up an index.
  --timeout S           (default 600) a session with data ends S seconds after its last message ("client timed out").
  --max-dump-size B     (default 64G) VMCORE data beyond it: no ACK (beyondMaxDumpSize).
  EKCD key              (fixed ${NETDUMP_EKCD_KEY_MAX / 1024} KiB, the client's buffer) key data beyond it: no ACK (keyBeyondLimit).
Datagrams that are not netdump messages are counted too (runt, length, oversize, notHerald, unknownType).
A session without data is safe for 50 ms after its herald, then for as long as --max-sessions newer heralds take
to come: under a flood faster than --max-sessions heralds per 50 ms, further heralds (a real one too) get no ACK
until it slows; a real client retries its herald every second for ~12 s. Raise --max-sessions for heavier floods.

Link outages: the sockets keep listening (a client's dump resumes when its link is back); link-down and link-up
lines report each outage (--json: {"event":"link-down",…}, {"event":"link-up",…,"downMs":N}).

Stop: SIGINT or SIGTERM ends open sessions as "Dump incomplete: server stopped" (those without data just end,
leaving no files), prints the drop counts if any and a stop line (--json:
{"event":"stop","interrupted":"SIGINT",…}) and exits 0; a second signal exits at once (130/143).

Examples:
  rawpoll netdump-server --dir /var/crash
  rawpoll netdump-server --dir /var/crash --bind 10.0.0.9 --timeout 60 --json

Metrics (--metrics): rawpoll_datagrams_received_total, _bytes_received_total, _drops_total{reason} (the reasons
above), _socket_drops_total, _hosts_seen, _bytes_written_total, _dumps_completed_total, _dumps_failed_total{reason}
(timeout, error, stopped), _netdump_sessions_open, _hooks_total{result}: read from the server's counters at each scrape.

Hook (--hook PROG), as netdumpd -i: after every dump that had data, PROG REASON CLIENT-IP HOSTNAME INFO VMCORE, REASON
success, timeout or error (a dump cut short by a stop is a timeout, as in netdumpd; RAWPOLL_DUMP_STATUS says
complete, timeout, error or stopped), VMCORE the .incomplete file when the dump is not whole. No shell; its output
goes to stderr; at most ${HOOK_DEFAULTS.maxConcurrent} at once (another is skipped and logged); killed with what it started
after --hook-timeout. Each ends in a "Hook …" line ({"event":"hook",…,"result":"ok|failed|timeout|skipped|error"}).
A PROG that is missing or not executable is refused at start (exit 2). At stop, running hooks are waited for.

Exit codes: 0 stopped by a signal, 1 cannot listen or a link named with -i was deleted, 2 bad usage.`)
    .action(async (f: ServerFlags) => {
      const bind = f.bind !== undefined ? formatIpv4(parseIpv4(f.bind, '--bind')) : undefined;
      const port = parsePort(f.port, '--port');
      const timeoutSec = intArg(f.timeout, '--timeout', 1, 86400)!;
      const maxDumpSize = parseByteSize(f.maxDumpSize, '--max-dump-size', MAX_DUMP_SIZE_LIMIT);
      const heraldTimeoutSec = intArg(f.heraldTimeout, '--herald-timeout', 1, 86400)!;
      const maxSessions = intArg(f.maxSessions, '--max-sessions', 1, MAX_SESSIONS_LIMIT)!;
      const statsIntervalSec = intArg(f.statsInterval, '--stats-interval', 0, 86400)!;
      checkWatchedLinks(f.iface);
      // Now, not at the first dump: a server that cannot write must not say it listens.
      const metricsAt = f.metrics !== undefined ? parseMetricsAddress(f.metrics) : undefined;
      const hook = f.hook !== undefined ? checkHookProgram(f.hook) : undefined;
      const hookTimeoutMs = Math.round(parseHookTimeout(f.hookTimeout) * 1000);
      checkWritableDir(f.dir, '--dir');
      const print = (l: string) => process.stdout.write(l + '\n');
      const log = f.json ? () => {} : print;
      // Bound before the herald socket: a --metrics port in use fails the start (exit 1) before "Waiting for clients".
      let live: NetdumpServer | null = null;
      let metrics: MetricsServer | null = null;
      if (metricsAt) {
        const m = new ReceiverMetrics();
        netdumpMetrics(m, () => live);
        metrics = await MetricsServer.start(m, metricsAt);
      }
      const server = await NetdumpServer.start({
        dir: f.dir, bind, port, timeoutSec, maxDumpSize, heraldTimeoutSec, maxSessions, statsIntervalSec, log,
        hook, hookTimeoutMs,
      }).catch(async (e: unknown) => { await metrics?.close(); throw e; });
      live = server;
      await relinquishPrivileges(cmd.getOptionValue('relinquishPrivileges'), async () => { await server.close(); await metrics?.close(); }, { writable: [f.dir] });
      if (f.json) {
        // The text form is the server's own "Drops since start: …" log line.
        server.on('drops', (drops: NetdumpDrops) => print(JSON.stringify({ event: 'drops', drops })));
        server.on('dump', (r: DumpResult) => {
          const kdh = r.kdh ? {
            hostname: r.kdh.hostname, versionstring: r.kdh.versionstring, panicstring: r.kdh.panicstring,
            dumplength: Number(r.kdh.dumplength), dumptime: Number(r.kdh.dumptime), parityOk: r.kdh.parityOk,
          } : null;
          print(JSON.stringify({ event: 'dump', ...r, kdh }));
        });
        // Failures outside a dump's own record (files that cannot be created, an info file that cannot be written).
        server.on('failure', (e: { client: string; file?: string; error: string }) => print(JSON.stringify({ event: 'write-error', ...e })));
        server.on('hook', (e: HookEvent) => print(JSON.stringify(e)));
      }
      // Running until stopped is this command's job: a stop exits 0 after the stop line (common.ts); a link named
      // with -i that is deleted ends the run too, with exit 1 (README, "When the link goes down").
      // SIGHUP (a logrotate script, systemctl reload) must not end the server, as Node's default would: each dump's
      // files are opened per session, so there is nothing to reopen. Said on stderr, once per signal.
      const onHup = () => process.stderr.write('rawpoll netdump-server: SIGHUP: nothing to reopen (each dump\'s files are opened per session); still running\n');
      process.on('SIGHUP', onHup);
      const { sig, gone } = await untilStopped(f.iface, bind, eventWriter('netdump-server', f.json));
      process.removeListener('SIGHUP', onHup);
      // Sessions without data end leaving nothing: only those with data are "left".
      const open = server.active - server.halfOpenCount;
      server.reportDrops(true);
      await server.close();
      await metrics?.close();
      const by = gone ? `interface ${gone} disappeared` : sig!;
      if (f.json) print(JSON.stringify({ event: 'stop', interrupted: sig, ...(gone ? { stopped: by } : {}), open_sessions: open }));
      else print(`Stopped by ${by}: ${open} open dump${open === 1 ? '' : 's'} left as "Dump incomplete: server stopped"`);
      if (gone) throw new LinkGoneError(gone);
      process.exitCode = interruptedExitCode(sig!, false);
    });
}

/** BYTES with an optional K/M/G/T suffix (powers of 1024, optional 'iB'/'B'): 64G, 512MiB, 1048576. */
export function parseByteSize(v: string, what: string, hi: number): number {
  const m = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(String(v).trim());
  const n = m ? Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' ') : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1 && n <= hi)) {
    throw new UsageError(`bad ${what} '${v}': expected bytes 1-${hi}, optionally with K, M, G or T (e.g. 64G)`);
  }
  return n;
}
