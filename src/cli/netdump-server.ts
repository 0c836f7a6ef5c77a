import { Command } from 'commander';
import { parseIpv4, formatIpv4, parsePort } from '../wire/addr.js';
import { NETDUMP_PORT } from '../proto/netdump.js';
import { NetdumpServer, type DumpResult } from '../rx/netdumpd.js';
import { intArg } from './common.js';

interface ServerFlags {
  dir: string;
  bind?: string;
  port: string;
  timeout: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('netdump-server')
    .summary('receive FreeBSD netdump kernel dumps (a netdumpd-compatible server)')
    .description('A netdumpd-compatible server: listens for netdump heralds on UDP 20023, gives each client its own\n' +
      'socket on a new port connected to client:20024, ACKs every valid message with its seqno, writes VMCORE data\n' +
      'at its offset into vmcore.<client>.<n> and the decoded kernel dump header into info.<client>.<n>, and\n' +
      'points vmcore.<client>.last / info.<client>.last at a complete dump. A herald path (rawpoll netdump --path,\n' +
      'FreeBSD net.netdump.path) picks a subdirectory of --dir; it can never leave --dir.\n' +
      'Runs until SIGINT/SIGTERM; open sessions then end as "Dump incomplete".')
    .requiredOption('--dir <DIR>', 'directory the dumps go into (must exist)')
    .option('--bind <IP>', 'listen on this address only (also the source of ACKs); default: all')
    .option('--port <PORT>', 'herald port', String(NETDUMP_PORT))
    .option('--timeout <SECONDS>', 'end a session after this long without a message (netdumpd: 600)', '600')
    .option('--json', 'one JSON object per finished dump instead of log lines')
    .addHelpText('after', '\nExamples:\n' +
      '  rawpoll netdump-server --dir /var/crash\n' +
      '  rawpoll netdump-server --dir /var/crash --bind 10.0.0.9 --timeout 60 --json\n\n' +
      'Exit codes: 0 stopped by a signal, 1 cannot listen, 2 bad usage.')
    .action(async (f: ServerFlags) => {
      const bind = f.bind !== undefined ? formatIpv4(parseIpv4(f.bind, '--bind')) : undefined;
      const port = parsePort(f.port, '--port');
      const timeoutSec = intArg(f.timeout, '--timeout', 1, 86400)!;
      const log = f.json ? () => {} : (l: string) => process.stdout.write(l + '\n');
      const server = await NetdumpServer.start({ dir: f.dir, bind, port, timeoutSec, log });
      server.on('dump', (r: DumpResult) => {
        if (!f.json) return;
        const kdh = r.kdh ? {
          hostname: r.kdh.hostname, versionstring: r.kdh.versionstring, panicstring: r.kdh.panicstring,
          dumplength: Number(r.kdh.dumplength), dumptime: Number(r.kdh.dumptime), parityOk: r.kdh.parityOk,
        } : null;
        process.stdout.write(JSON.stringify({ ...r, kdh }) + '\n');
      });
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
    });
}
