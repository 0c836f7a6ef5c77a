import { Command } from 'commander';
import { LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { parseIpv4, parseSource, parsePort } from '../wire/addr.js';
import { parseSourceAny } from '../wire/endpoint.js';
import { parseMac } from '../wire/mac.js';
import { DEBUGNET_RETRIES, DEBUGNET_ROUND_MS, NETDUMP_PORT } from '../proto/netdump.js';
import { bufferSource, fileSource, netdump, type NetdumpProgress, type NetdumpSource } from '../tx/netdump.js';
import { dropPrivileges, type Account } from '../host/privdrop.js';
import {
  addDropOption, eventWriter, interruptedExitCode, intArg, onStopSignal, reportLinkEvents, type EventWriter, type StopSignal,
} from './common.js';

interface NetdumpFlags {
  iface?: string;
  server: string;
  port: string;
  file: string;
  path?: string;
  from?: string;
  gateway?: string;
  dstMac?: string;
  panic?: string;
  hostname?: string;
  window: string;
  pollMs: string;
  retries: string;
  arpRetries: string;
  linkWait: string;
  json?: boolean;
  relinquishPrivileges?: Account;
}

export function register(program: Command): void {
  const cmd = program
    .command('netdump')
    .summary('send a file as a FreeBSD netdump kernel dump (reliable, every datagram ACKed)')
    .description('Send a file to a netdump server (FreeBSD netdumpd, or rawpoll netdump-server) the way FreeBSD\'s kernel\n' +
      'does after a panic: HERALD to server:20023 from port 20024, the data as VMCORE chunks at byte offsets, a\n' +
      '512-byte kernel dump header (version 4: hostname, uname -a, --panic text, length, time), then FINISHED.\n' +
      'Frames are hand-built (TTL 255, IP ID 0, DF) and ACKs are read with pcap, so it works from an address the\n' +
      'host does not even have (--from; rawpoll answers ARP for it).\n' +
      'Default pacing is the kernel\'s: rounds of one 64 KiB buffer (46 datagrams at MTU 1500, at most 64), each\n' +
      'round fully ACKed before the next, only un-ACKed ones resent after --poll-ms, giving up after\n' +
      '1 + --retries tries. --window N keeps N in flight instead (a sliding window the server cannot tell from\n' +
      'the kernel: it only echoes seqnos). On a long path the window must cover rate x RTT: at 20 ms RTT the\n' +
      'kernel\'s rounds reach ~3 MB/s, --window 64 ~4.4, --window 256 ~17, --window 512 ~30 (this repo\'s bench).\n' +
      'A link that goes down mid-dump stops the retransmit clock for up to --link-wait seconds (one event line when\n' +
      'it goes down, one when it is back); then the datagrams in flight are resent and the dump goes on. An interface\n' +
      'deleted mid-dump ends it: the summary, then exit 1.')
    .requiredOption('-i, --iface <IF>', 'interface to send on (needs root or CAP_NET_RAW)')
    .requiredOption('--server <IP>', 'netdump server address')
    .requiredOption('--file <PATH>', 'what to send ("-" for standard input, read to the end first)')
    .option('--port <PORT>', 'server herald port', String(NETDUMP_PORT))
    .option('--path <DIR>', 'server-side path for the files, relative to its dump directory (FreeBSD net.netdump.path)')
    .option('--from <IP[/PREFIX]>', "source address; default: the interface's first IPv4 address")
    .option('--gateway <IP>', 'next hop when the server is not on-link (ARP-resolved instead of the server)')
    .option('--dst-mac <MAC>', 'next-hop MAC: skips ARP')
    .option('--panic <TEXT>', 'panic string for the dump header', '')
    .option('--hostname <NAME>', 'hostname for the dump header (default: this host\'s)')
    .option('--window <N>', 'sliding window of N datagrams in flight; 0 = the kernel\'s 64 KiB rounds', '0')
    .option('--poll-ms <MS>', 'how long a round waits for its ACKs (debugnet: 2000 polls x 0.5 ms)', String(DEBUGNET_ROUND_MS))
    .option('--retries <N>', 'retransmit rounds before giving up (debugnet: 1 + 11 tries)', String(DEBUGNET_RETRIES))
    .option('--arp-retries <N>', 'ARP who-has requests before giving up (debugnet: 3)', '3')
    .option('--link-wait <SECONDS>', 'how long one link outage may last (the retransmit clock stops meanwhile, then the un-ACKed datagrams are resent); past it exit 1, 0 gives up at once', '60')
    .option('--json', 'print JSON lines: link events, then the summary (bytes, packets, retransmits, seconds, MBps, linkOutages, linkDownMs)')
    .addHelpText('after', '\nExamples:\n' +
      '  sudo rawpoll netdump -i eth1 --server 10.0.0.9 --file /var/crash/vmcore.0 --path host7/\n' +
      '  sudo rawpoll netdump -i eth1 --server 10.0.0.9 --file core.bin --from 10.0.0.77 --window 64\n' +
      '  dmesg | sudo rawpoll netdump -i eth1 --server 10.0.0.9 --file - --panic "oops"\n\n' +
      'SIGINT/SIGTERM stop the transfer (no FINISHED: the server keeps an incomplete dump) and print how many bytes\n' +
      'the server ACKed, of how many.\n' +
      'Exit codes: 0 the server ACKed FINISHED, 1 runtime failure (no ARP reply, server silent, link down longer\n' +
      'than --link-wait, interface gone), 2 bad usage,\n' +
      '130 (SIGINT) or 143 (SIGTERM) interrupted before the dump was complete.');
  addDropOption(cmd, 'once the link and the ACK capture are open and the server resolved (before the herald)');
  cmd.action(async (f: NetdumpFlags) => {
      // debugnet (sys/net/debugnet.c) speaks IPv4 only, and so do FreeBSD's netdumpd and rawpoll netdump-server.
      refuseIpv6(f.server, '--server');
      if (f.gateway !== undefined) refuseIpv6(f.gateway, '--gateway');
      if (f.from !== undefined) refuseIpv6(f.from, '--from');
      const server = parseIpv4(f.server, '--server');
      // Every address and port before the file is read and anything is sent: port 0 is no one's to herald to.
      const serverPort = parsePort(f.port, '--port');
      if (serverPort === 0) throw new UsageError(`bad --port '${f.port}': expected the server's herald port 1-65535 (netdumpd: ${NETDUMP_PORT})`);
      const gateway = f.gateway !== undefined ? parseIpv4(f.gateway, '--gateway') : undefined;
      const dstMac = f.dstMac !== undefined ? parseMac(f.dstMac, '--dst-mac') : undefined;
      const from = f.from !== undefined ? parseSource(f.from, '--from') : undefined;
      if (from?.port !== undefined) throw new UsageError(`bad --from '${f.from}': netdump always sends from port 20024; drop the :PORT`);
      const window = intArg(f.window, '--window', 0, 65536)!;
      const pollMs = intArg(f.pollMs, '--poll-ms', 1, 600000)!;
      const retries = intArg(f.retries, '--retries', 0, 1000)!;
      const arpRetries = intArg(f.arpRetries, '--arp-retries', 1, 100)!;
      const linkWait = intArg(f.linkWait, '--link-wait', 0, 86400)!;
      if (f.path !== undefined && Buffer.byteLength(f.path) > 1023) throw new UsageError('bad --path: at most 1023 bytes (the server reads MAXPATHLEN)');
      // From here on a signal stops the transfer, not the process: the summary says how far it got.
      const stop = new AbortController();
      const unlisten = onStopSignal((sig) => stop.abort(sig));
      let source;
      try {
        source = f.file === '-' ? await readStdin(stop.signal) : fileSource(f.file);
      } catch (e) {
        unlisten();
        throw e;
      }
      if (!source) {
        // Interrupted while standard input was still being read: nothing was sent.
        unlisten();
        const sig = stop.signal.reason as StopSignal;
        if (f.json) process.stdout.write(JSON.stringify({ bytes: 0, total: null, interrupted: sig }) + '\n');
        else process.stdout.write(`netdump: interrupted (${sig}) while reading standard input; nothing sent\n`);
        process.exitCode = interruptedExitCode(sig, true);
        return;
      }
      const tty = process.stderr.isTTY && !f.json;
      const onProgress = tty ? (p: NetdumpProgress) => {
        const pct = p.total ? ((100 * p.bytesAcked) / p.total).toFixed(1) : '100.0';
        const rate = p.seconds > 0 ? (p.bytesAcked / 1e6 / p.seconds).toFixed(2) : '0.00';
        process.stderr.write(`\r${p.bytesAcked} / ${p.total} bytes  ${pct}%  ${rate} MB/s  ${p.retransmits} retransmits  `);
      } : undefined;
      // Link-down/up/gone events, one line each (a JSON line on stdout with --json); on a TTY below the progress line.
      const ev = eventWriter('netdump', f.json);
      const event: EventWriter = tty ? (e, human) => { process.stderr.write('\n'); ev(e, human); } : ev;
      let summary;
      try {
        summary = await netdump({
          iface: f.iface!, server, serverPort, source, path: f.path, from, gateway, dstMac,
          panic: f.panic, hostname: f.hostname, window, pollMs, retries, arpRetries, onProgress, signal: stop.signal,
          // onLink comes once both handles are open, before the herald: -Z gives up root there.
          linkWaitMs: linkWait * 1000, onLink: (w) => {
            reportLinkEvents(w, event);
            if (f.relinquishPrivileges) dropPrivileges(f.relinquishPrivileges);
          },
        });
      } finally {
        unlisten();
        if (tty) process.stderr.write('\n');
      }
      if (f.json) process.stdout.write(JSON.stringify(summary) + '\n');
      else if (summary.interrupted) {
        process.stdout.write(`netdump: interrupted (${summary.interrupted}) after ${summary.bytes} of ${summary.total} bytes ACKed by ` +
          `${summary.server}:${summary.serverPort || NETDUMP_PORT} from ${summary.src} in ${summary.seconds.toFixed(3)} s, ${summary.packets} datagrams, ` +
          `${summary.retransmits} retransmits; no FINISHED sent: the server's dump is incomplete\n`);
      } else if (summary.linkGone) {
        process.stdout.write(`netdump: interface ${summary.linkGone} disappeared after ${summary.bytes} of ${summary.total} bytes ACKed by ` +
          `${summary.server}:${summary.serverPort || NETDUMP_PORT} from ${summary.src} in ${summary.seconds.toFixed(3)} s, ${summary.packets} datagrams, ` +
          `${summary.retransmits} retransmits${outages(summary)}; no FINISHED sent: the server's dump is incomplete\n`);
      } else {
        process.stdout.write(`netdump: ${summary.bytes} bytes to ${summary.server}:${summary.serverPort} from ${summary.src} in ` +
          `${summary.seconds.toFixed(3)} s (${summary.MBps} MB/s), ${summary.packets} datagrams, ${summary.retransmits} retransmits, ${summary.mode}` +
          `${outages(summary)}\n`);
      }
      if (summary.linkGone) throw new LinkGoneError(summary.linkGone);
      if (summary.interrupted) process.exitCode = interruptedExitCode(summary.interrupted as StopSignal, true);
    });
}

/** All of standard input, read without blocking the event loop (so a signal is seen); null if `signal` aborted. */
async function readStdin(signal: AbortSignal): Promise<NetdumpSource | null> {
  const chunks: Buffer[] = [];
  const onAbort = () => process.stdin.destroy();
  signal.addEventListener('abort', onAbort);
  try {
    for await (const c of process.stdin) chunks.push(c as Buffer);
  } catch (e) {
    if (!signal.aborted) throw new RuntimeError(`cannot read --file - (standard input): ${(e as Error).message}`);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return signal.aborted ? null : bufferSource(Buffer.concat(chunks));
}

/** "; 1 link outage, 2.10 s down", or nothing when the link stayed up. */
function outages(s: { linkOutages: number; linkDownMs: number }): string {
  if (!s.linkOutages) return '';
  return `; ${s.linkOutages} link outage${s.linkOutages === 1 ? '' : 's'}, ${(s.linkDownMs / 1000).toFixed(2)} s down`;
}

/**
 * An IPv6 address where netdump needs IPv4: the usage error says why, rather than "bad address" (the other senders
 * take IPv6; this one cannot, by design of the protocol it speaks).
 */
function refuseIpv6(v: string, what: string): void {
  let six = false;
  try {
    six = parseSourceAny(v, what).family === 6;
  } catch { /* not an address of either family: the IPv4 parser names what is wrong with it */ }
  if (six) throw new UsageError(`netdump is IPv4-only, as FreeBSD's debugnet is: ${what} ${v} is IPv6; give an IPv4 address`);
}
