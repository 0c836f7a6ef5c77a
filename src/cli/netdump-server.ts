import { Command } from 'commander';
import { parseIpv4, formatIpv4, parsePort } from '../wire/addr.js';
import { LinkGoneError } from '../errors.js';
import { NETDUMP_PORT } from '../proto/netdump.js';
import { UsageError } from '../errors.js';
import { DEFAULT_MAX_DUMP_SIZE, MAX_DUMP_SIZE_LIMIT, NetdumpServer, type DumpResult } from '../rx/netdumpd.js';
import { addWatchOption, checkWatchedLinks, eventWriter, intArg, interruptedExitCode, untilStopped } from './common.js';

interface ServerFlags {
  dir: string;
  bind?: string;
  port: string;
  timeout: string;
  maxDumpSize: string;
  json?: boolean;
  iface: string[];
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
    .option('--timeout <SECONDS>', 'end a session after this long without a message (netdumpd: 600)', '600')
    .option('--max-dump-size <BYTES>', 'refuse (no ACK) data whose offset + length lies beyond this; suffixes K, M, G, T (powers of 1024)', '64G')
    .option('--json', 'one JSON object per line instead of log lines: {"event":"dump",…} per finished session, {"event":"write-error",…}, {"event":"stop",…}');
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

Link outages: the sockets keep listening (a client's dump resumes when its link is back); link-down and link-up
lines report each outage (--json: {"event":"link-down",…}, {"event":"link-up",…,"downMs":N}).

Stop: SIGINT or SIGTERM ends open sessions as "Dump incomplete: server stopped", prints a stop line (--json:
{"event":"stop","interrupted":"SIGINT",…}) and exits 0; a second signal exits at once (130/143).

Examples:
  rawpoll netdump-server --dir /var/crash
  rawpoll netdump-server --dir /var/crash --bind 10.0.0.9 --timeout 60 --json

Exit codes: 0 stopped by a signal, 1 cannot listen or a link named with -i was deleted, 2 bad usage.`)
    .action(async (f: ServerFlags) => {
      const bind = f.bind !== undefined ? formatIpv4(parseIpv4(f.bind, '--bind')) : undefined;
      const port = parsePort(f.port, '--port');
      const timeoutSec = intArg(f.timeout, '--timeout', 1, 86400)!;
      const maxDumpSize = parseByteSize(f.maxDumpSize, '--max-dump-size', MAX_DUMP_SIZE_LIMIT);
      checkWatchedLinks(f.iface);
      const print = (l: string) => process.stdout.write(l + '\n');
      const log = f.json ? () => {} : print;
      const server = await NetdumpServer.start({ dir: f.dir, bind, port, timeoutSec, maxDumpSize, log });
      if (f.json) {
        server.on('dump', (r: DumpResult) => {
          const kdh = r.kdh ? {
            hostname: r.kdh.hostname, versionstring: r.kdh.versionstring, panicstring: r.kdh.panicstring,
            dumplength: Number(r.kdh.dumplength), dumptime: Number(r.kdh.dumptime), parityOk: r.kdh.parityOk,
          } : null;
          print(JSON.stringify({ event: 'dump', ...r, kdh }));
        });
        // Failures outside a dump's own record (files that cannot be created, an info file that cannot be written).
        server.on('failure', (e: { client: string; file?: string; error: string }) => print(JSON.stringify({ event: 'write-error', ...e })));
      }
      // Running until stopped is this command's job: a stop exits 0 after the stop line (common.ts); a link named
      // with -i that is deleted ends the run too, with exit 1 (README, "When the link goes down").
      const { sig, gone } = await untilStopped(f.iface, bind, eventWriter('netdump-server', f.json));
      const open = server.active;
      await server.close();
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
