import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { RuntimeError, UsageError } from '../errors.js';
import { UdpSender } from '../tx/sender.js';
import { parseEndpointAny } from '../wire/endpoint.js';
import {
  addDropOption, addFrameOptions, addLinkOptions, checkDropFiles, checkInputFile, countArg, interruptedExitCode, onStopSignal, relinquishPrivileges,
  senderOptionsFromFlags, type FrameFlags, type StopSignal,
} from './common.js';

interface SendFlags extends FrameFlags {
  to: string;
  data?: string;
  file?: string;
  count: string;
  pcapNano?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('send')
    .summary('send UDP datagrams in hand-built Ethernet/IPv4/UDP or Ethernet/IPv6/UDP frames')
    .description('Build Ethernet/IPv4/UDP frames by hand (netpoll\'s profile: TTL 64, IP ID counting from 1, DF clear,\n' +
      'UDP checksum always) and inject them with pcap_sendpacket. The destination MAC comes from our own ARP\n' +
      '(or --dst-mac). The payload is --data, --file, or standard input; it must fit the MTU (no fragmentation).\n\n' +
      'IPv6 (--to [ADDR]:PORT): Ethernet/IPv6/UDP as netpoll\'s push_ipv6 (hop limit 64, traffic class and flow label 0,\n' +
      'UDP checksum mandatory), the next hop\'s MAC from our own NDP; at most MTU - 48 bytes of payload. --df, --ip-id,\n' +
      '--bad-ip-checksum and --no-udp-checksum are IPv4 only. A link-local target (fe80::/10) needs -i.')
    .requiredOption('--to <IP:PORT>', 'destination address and UDP port: 10.0.0.2:9000, or [fd00::2]:9000 for IPv6')
    .option('--data <TEXT>', 'payload text')
    .option('--file <PATH>', 'payload file ("-" for standard input)')
    .option('-c, --count <N>', 'datagrams to send (the same payload each time)', '1');
  addLinkOptions(cmd);
  addFrameOptions(cmd);
  cmd.option('--pcap-nano', 'with -w: nanosecond timestamps (pcap magic 0xa1b23c4d, as tcpdump --time-stamp-precision nano)');
  addDropOption(cmd, 'once the interface is open and the next hop resolved (before the first datagram)');
  cmd.addHelpText('after', '\nExamples:\n' +
      "  sudo rawpoll send -i eth1 --to 10.0.0.2:9000 --data 'hello'\n" +
      '  sudo rawpoll send -i eth1 --from 10.0.0.7:5000 --to 10.0.0.2:9000 --file payload.bin -c 100\n' +
      '  echo hi | sudo rawpoll send -i eth1 --to 10.0.0.2:9000 --dst-mac 02:00:00:00:00:02\n' +
      "  sudo rawpoll send -i eth1 --to '[fd00::2]:9000' --data 'hello'\n" +
      "  sudo rawpoll send -i eth1 --from '[fd00::7/64]:5000' --to '[fd00:99::2]:9000' --gateway fe80::1 --data x\n" +
      "  sudo rawpoll send -i eth1 --to '[fe80::2]:9000' --data 'on this link only'\n" +
      '  rawpoll send --to 10.0.0.2:9000 --data x --dst-mac 02:00:00:00:00:02 --src-mac 02:00:00:00:00:01 --from 10.0.0.1 -w out.pcap\n\n' +
      '-w as tcpdump: - is standard output (the summary then goes to standard error), a FIFO or device is written\n' +
      'into, a directory is refused; a file is written beside its name and renamed into place when complete.\n' +
      'SIGINT/SIGTERM stop a long -c run: the summary says how many went out, then the exit code is 130/143.\n' +
      'Exit codes: 0 sent, 1 runtime failure (no ARP/NDP reply, no permission), 2 bad usage (nothing sent),\n' +
      '130 (SIGINT) or 143 (SIGTERM) interrupted before all --count datagrams were sent.');
  cmd.action(async (f: SendFlags) => {
    const to = parseEndpointAny(f.to, '--to');
    const count = countArg(f.count)!;
    const opts = { ...senderOptionsFromFlags(f), pcapNano: !!f.pcapNano };
    if (f.pcapNano && !f.write) throw new UsageError('--pcap-nano is for the pcap file: add -w FILE');
    if (f.write && !f.iface && !f.from) {
      throw new UsageError(`writing a pcap file without an interface needs the source address: add --from ${to.family === 6 ? 'IPv6 (e.g. fd00::7)' : 'IP'}`);
    }
    checkDropFiles(f.relinquishPrivileges, { write: f.write });
    const payload = readPayload(f);
    // From here on a signal stops the sending (one during ARP takes effect when ARP is done), not the process.
    let interrupted = null as StopSignal | null;
    const unlisten = onStopSignal((sig) => { interrupted = sig; });
    let sender: UdpSender;
    try {
      sender = await UdpSender.open({ ...opts, to, payloadLen: payload.length });
    } catch (e) {
      unlisten();
      throw e;
    }
    try {
      await relinquishPrivileges(f.relinquishPrivileges);
      sender.checkPayload(payload.length);
      const t0 = performance.now();
      const progress = process.stderr.isTTY && count >= 10000 && !f.json ? new Progress(count) : null;
      // Slices of SEND_SLICE with a turn of the event loop between them, so that a signal is seen.
      for (let done = 0; done < count && !interrupted;) {
        const n = Math.min(SEND_SLICE, count - done);
        const base = done;
        sender.sendRepeated(payload, n, progress ? (i) => progress.tick(base + i) : undefined);
        done += n;
        if (done < count) await new Promise((r) => setImmediate(r));
      }
      const secs = (performance.now() - t0) / 1000;
      progress?.done();
      await sender.close();
      const d = sender.describe();
      const summary = {
        sent: sender.stats.sent, bytes: sender.stats.bytes, payloadBytes: payload.length,
        src: d.src, dst: d.dst, srcMac: d.srcMac, dstMac: d.dstMac, via: d.via,
        arpMs: sender.arpMs === null ? null : Math.round(sender.arpMs * 1000) / 1000,
        seconds: Math.round(secs * 1e6) / 1e6, pps: secs > 0 ? Math.round(sender.stats.sent / secs) : null,
        sendRetries: sender.stats.retries, iface: sender.iface?.name ?? null, pcapFile: f.write ?? null,
        count, interrupted: sender.stats.sent < count ? interrupted : null,
      };
      // With -w - standard output carries the pcap: the summary goes to standard error, as tcpdump's does.
      const out = f.write === '-' ? process.stderr : process.stdout;
      if (f.json) {
        out.write(JSON.stringify(summary) + '\n');
      } else {
        const where = f.write === '-' ? 'written to standard output' : f.write ? `written to ${f.write}` : `sent on ${summary.iface}`;
        const arp = summary.arpMs === null ? 'MAC given' : `${sender.family === 6 ? 'NDP' : 'ARP'} ${summary.arpMs} ms`;
        out.write(`${summary.sent} datagram${summary.sent === 1 ? '' : 's'} (${payload.length} bytes payload, ${summary.bytes} bytes of frames) ${summary.src} -> ${summary.dst} [${summary.dstMac}, ${arp}] ${where}` +
          (count > 1 && summary.pps ? `, ${summary.pps} pps` : '') +
          (summary.interrupted ? `; interrupted (${summary.interrupted}) after ${summary.sent} of ${count}` : '') + '\n');
      }
      if (summary.interrupted) process.exitCode = interruptedExitCode(summary.interrupted, true);
    } catch (e) {
      sender.abort();
      throw e;
    } finally {
      unlisten();
    }
  });
}

/** Datagrams per sendRepeated call: ~10 ms at pcap speeds, so a SIGINT stops a long -c run that soon. */
const SEND_SLICE = 4096;

function readPayload(f: SendFlags): Buffer {
  if (f.data !== undefined && f.file !== undefined) throw new UsageError('give the payload with --data or --file, not both');
  if (f.data !== undefined) return Buffer.from(f.data, 'utf8');
  const path = f.file ?? '-';
  if (path === '-' && f.file === undefined && process.stdin.isTTY) {
    throw new UsageError('no payload: give --data TEXT, --file PATH, or pipe it on standard input');
  }
  checkInputFile(path, '--file');
  try {
    return readFileSync(path === '-' ? 0 : path);
  } catch (e) {
    throw new RuntimeError(`cannot read payload ${path === '-' ? 'from standard input' : `file ${path}`}: ${(e as Error).message}`);
  }
}

/** A one-line progress display on a TTY (stderr), refreshed at most 5 times a second. */
class Progress {
  private last = 0;
  private readonly t0 = performance.now();
  constructor(private readonly total: number) {}
  tick(i: number): void {
    const now = performance.now();
    if (now - this.last < 200) return;
    this.last = now;
    const pps = Math.round(i / ((now - this.t0) / 1000));
    process.stderr.write(`\r${i}/${this.total} sent, ${pps} pps   `);
  }
  done(): void {
    process.stderr.write('\r\x1b[K');
  }
}
