import { Command } from 'commander';
import { LinkGoneError, UsageError } from '../errors.js';
import { ifaceInfo } from '../link/iface.js';
import { NativeLink, parseEngine } from '../link/native.js';
import { LinkWatch } from '../link/watch.js';
import { realtimeNowNs, startBlast, type BlastResult } from '../tx/blast.js';
import type { Pacing } from '../tx/schedule.js';
import { UdpSender } from '../tx/sender.js';
import { buildTemplates, distinctSizes, makeFlows, sizeLimits, type BlastAddr, type Flow } from '../tx/templates.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';
import { formatEndpoint, type IpAddress } from '../wire/endpoint.js';
import { formatIpv6Addr, IPV6_ADDR_LEN } from '../wire/ipv6.js';
import { formatMac } from '../wire/mac.js';
import {
  parseDestinationAny, parseDuration, parseIpv6Range, parseLinkDownPolicy, parseRange, parseRate, parseSizes, parseStartAt, refuseOverIpv6,
} from './blast-args.js';
import {
  addDropOption, addFrameProfileOptions, addLinkOptions, checkDropFiles, eventWriter, interruptedExitCode, intArg, onStopSignal, parseVlanArg, rangeArg,
  relinquishPrivileges, reportLinkEvents, senderOptionsFromFlags, type FrameFlags, type StopSignal,
} from './common.js';

interface BlastFlags extends FrameFlags {
  to: string;
  count?: string;
  duration?: string;
  rate?: string;
  gap?: string;
  burst?: string;
  burstGap?: string;
  flows?: string;
  sport?: string;
  dport?: string;
  srcIp?: string;
  imix?: string | boolean;
  seq: boolean;
  startAt?: string;
  engine?: string;
  batch?: string;
  threads?: string;
  qdiscBypass?: boolean;
  progress: boolean;
  onLinkDown?: string;
  pcapNano?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('blast')
    .summary('test traffic at a given rate: pktgen-style frames, pacing, bursts, flows, IMIX')
    .description('Send UDP test traffic as fast as the link takes it or at a paced rate. Every datagram carries pktgen\'s\n' +
      'test header (magic 0xbe9be955, seq per flow from 1, tv_sec, tv_usec at send) for `rawpoll sink` or Wireshark.\n' +
      'The schedule is absolute: frame i is due at start + i slots, so the average rate holds and frames go out\n' +
      'back to back only when asked (--burst) or when the sender fell behind — never "N frames, then sleep".\n' +
      'Engines: native (AF_PACKET + sendmmsg batches, pacing loop in C; the default when built with\n' +
      '`npm run build:native`) and pcap (libpcap: pcap_inject per frame, a group per call from JS; portable).\n' +
      'A link that goes down mid-run does not stop the schedule: frames due while it is down are counted as not sent\n' +
      '(and toward --count), sending resumes on schedule when it is back, and one event line marks each outage\'s start\n' +
      'and end. A deleted interface ends the run: summary, then "interface IF disappeared", exit 1.')
    .requiredOption('--to <IP[:PORT]>', 'destination: 10.0.0.2:9, [fd00::2]:9, or the address alone (port default 9, discard — pktgen\'s default). ' +
      'Over IPv6 there is no DF, IP ID or header checksum (--df, --ip-id, --bad-ip-checksum are refused) and the UDP checksum is mandatory (--no-udp-checksum is refused)')
    .option('-c, --count <N>', 'frames to send; 0 = until --duration or Ctrl-C', '0')
    .option('-d, --duration <TIME>', 'stop after this long: 10, 1.5s, 500ms, 2m (a bare number is seconds)')
    .option('-r, --rate <RATE>', 'frames per second (10000, 250kpps, 1.5Mpps) or bits per second of frames (800Mbps, 2Gbps). ' +
      'Bits count the Ethernet frame as handed to the NIC, header to the end of padding: no FCS, preamble or inter-frame gap ' +
      '(on the wire a frame occupies 24 bytes more). Default: as fast as the NIC takes them')
    .option('--gap <TIME>', 'fixed gap between frame starts instead of --rate: 500ns, 10us, 1ms (bare number: ns)')
    .option('--burst <N>', 'send N frames back to back, then idle (with --rate: bursts keep the average rate)')
    .option('--burst-gap <TIME>', 'idle time after each burst, from its last frame: 1ms, 100us (bare number: ns)')
    .option('--flows <N>', 'number of flows; flow k takes the k-th value of each --sport/--dport/--src-ip range (default: the largest range)')
    .option('--sport <PORT[-PORT]>', 'UDP source port or range', '9')
    .option('--dport <PORT[-PORT]>', 'UDP destination port or range (overrides the port in --to)')
    .option('--src-ip <IP[-IP]>', 'source address or range, of --to\'s family: 10.0.0.1-10.0.0.16 or fd00::10-fd00::1f (default: --from, else the interface\'s address)')
    .option('--size <SIZE>', 'frame bytes without FCS: N (60..MTU+14; IPv6: 78..MTU+14, the smallest IPv6 pktgen frame), a list A,B,C to cycle through, or a range LO-HI drawn at random', undefined)
    .option('--imix [WEIGHTS]', 'weight the --size list, e.g. --size 64,576,1514 --imix 7,4,1; alone: the simple IMIX 64/576/1514 at 7:4:1')
    .option('--no-seq', 'no pktgen test header: the payload is zeros')
    .option('--start-at <EPOCH>', 'start at this Unix time (date +%s.%N; e.g. 1795000000.250): sleeps, then busy-waits the last stretch, so senders on several hosts with synced clocks start together')
    .option('--engine <ENGINE>', 'native (AF_PACKET, sendmmsg batches, C pacing) or pcap (libpcap, portable); default native when built')
    .option('--batch <N>', 'most frames per sendmmsg call (native) or sendBatch call (pcap): default 256 unpaced; 64 paced, which also bounds how many go back to back when catching up. ' +
      'The frames of one call share one send timestamp: for one-way latency use --batch 1 (a paced sender that fell behind otherwise stamps a whole catch-up batch at once)')
    .option('--threads <N>', 'native engine, unpaced runs: N sender threads, one per CPU (trafgen forks one process per CPU). ' +
      'IP IDs and seqs are still each sent once, but threads interleave, so a sink sees reordering', '1')
    .option('--qdisc-bypass', 'native engine: PACKET_QDISC_BYPASS — straight to the driver; local tcpdump will not see the frames')
    .option('--on-link-down <WHAT>', 'continue: count the frames due while the link is down as not sent and resume on schedule ' +
      'when it is back; stop: end the run there (summary, exit 1)', 'continue')
    .option('--no-progress', 'no live progress line on a terminal')
    .option('-w, --write <FILE.pcap>', 'write the frames blast would send to a classic pcap file instead (- for standard output; ' +
      'a FIFO or device is written into). No root and no -i needed with --dst-mac, --src-mac and --from; needs --count or --duration')
    .option('--pcap-nano', 'with -w: nanosecond timestamps (pcap magic 0xa1b23c4d, as tcpdump --time-stamp-precision nano)');
  addLinkOptions(cmd);
  addFrameProfileOptions(cmd, 'frame');
  cmd.option('--json', 'print one JSON summary object at the end');
  addDropOption(cmd, 'once the interface is open and the next hop resolved (before the first frame, and before --start-at\'s wait)');
  cmd.addHelpText('after', '\nExamples:\n' +
    '  sudo rawpoll blast -i eth1 --to 10.0.0.2:9 --count 1000000                          # as fast as the NIC takes\n' +
    '  sudo rawpoll blast -i eth1 --to 10.0.0.2:9 --rate 250kpps --duration 10\n' +
    '  sudo rawpoll blast -i eth1 --to 10.0.0.2:9 --rate 800Mbps --size 1514 --duration 10\n' +
    '  sudo rawpoll blast -i eth1 --to 10.0.0.2:9 --burst 64 --burst-gap 1ms --count 6400   # 64 back to back, then idle\n' +
    '  sudo rawpoll blast -i eth1 --to 10.0.0.2 --flows 16 --sport 10000-10015 --dport 9 --size 64,576,1518 --imix 7,4,1\n' +
    '  sudo rawpoll blast -i eth1 --to 10.0.0.2:9 --rate 100kpps --start-at $(( $(date +%s) + 5 )).250 --json\n' +
    '  sudo rawpoll blast -i eth1 --to [fd00::2]:9 --src-ip fd00::10-fd00::1f --sport 10000-10003 --flows 16 --rate 100kpps\n' +
    '  rawpoll blast --to 10.0.0.2:9 --from 10.0.0.1 --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:02 --flows 4 --count 100 -w - | tcpdump -r -\n\n' +
    'The summary reports frames sent, any not sent (a hard send error: never dropped silently; a full queue is\n' +
    'waited for and counted as "queue waits"), achieved rate and its error against --rate, and how late frames\n' +
    'left against their slots. SIGINT/SIGTERM stop the run (before --start-at: nothing is sent) and print the summary.\n' +
    'Exit codes: 0 done, or stopped by SIGINT/SIGTERM when neither --count nor --duration was given; 1 runtime failure;\n' +
    '2 bad usage (nothing sent); 130 (SIGINT) or 143 (SIGTERM) when a run with --count or --duration was cut short.');
  cmd.action(async (f: BlastFlags) => {
    // Parse everything before any I/O: a typo must not cost an ARP (or NDP) round trip.
    const to = parseDestinationAny(f.to);
    const v6 = to.addr.family === 6;
    const family = v6 ? 6 : 4;
    if (v6) refuseOverIpv6(f, f.to);
    const dstIp = to.addr.family === 4 ? to.addr.ip : 0;
    const dportDefault = to.port !== undefined ? String(to.port) : '9';
    const dstPorts = parseRange(f.dport ?? dportDefault, '--dport', 0, 65535);
    const srcPorts = parseRange(f.sport ?? '9', '--sport', 0, 65535);
    const count = intArg(f.count, '--count', 0, Number.MAX_SAFE_INTEGER)!;
    const durationNs = f.duration !== undefined ? parseDuration(f.duration, '--duration', 's') : 0;
    if (f.rate !== undefined && f.gap !== undefined) throw new UsageError('--rate and --gap both set the pace: give one');
    const pacing: Pacing = {
      ...(f.rate !== undefined ? parseRate(f.rate) : {}),
      gapNs: f.gap !== undefined ? parseDuration(f.gap, '--gap', 'ns') : undefined,
      burst: intArg(f.burst, '--burst', 1, 1 << 20),
      burstGapNs: f.burstGap !== undefined ? parseDuration(f.burstGap, '--burst-gap', 'ns') : undefined,
    };
    if (pacing.burstGapNs && !pacing.burst) throw new UsageError('--burst-gap needs --burst N (how many frames each burst holds)');
    // Default: the smallest frame; with an 802.1Q tag that is 64 bytes (60 cannot hold tag + headers + test header).
    // Sizes against this link's MTU before anything is opened: a bad --size must not cost an ARP.
    // Over IPv6 the headers alone outgrow 60: the default is the smallest frame, 78 bytes (82 tagged).
    const seq = f.seq !== false;
    const mtu = f.iface ? ifaceInfo(f.iface).mtu : 1500;
    const lim = sizeLimits({ mtu, vlan: parseVlanArg(f.vlan), seq, family });
    const sizeDefault = f.imix ? undefined : v6 ? String(lim.min) : f.vlan !== undefined ? '64' : undefined;
    const minWhy = v6 ? `Ethernet${f.vlan !== undefined ? ' + 802.1Q' : ''} + 40 IPv6 + 8 UDP${seq ? ' + 16-byte test header' : ''}` : `headers${seq ? ' + 16-byte test header' : ''} or the Ethernet minimum`;
    const sizes = parseSizes(f.size ?? sizeDefault, f.imix, {
      ...lim, why: `${f.iface ? `${f.iface} (MTU ${mtu})` : `a pcap file (MTU ${mtu}: no -i given)`}: ${lim.min} = ${minWhy}, ` +
        `${lim.max} = MTU ${mtu} + ${lim.max - mtu} bytes of Ethernet header${f.vlan !== undefined ? ' and 802.1Q tag' : ''}`,
    });
    const startAt = f.startAt !== undefined ? parseStartAt(f.startAt) : undefined;
    if (startAt && BigInt(startAt.sec) * 1_000_000_000n + BigInt(startAt.nsec) <= realtimeNowNs()) {
      throw new UsageError(`--start-at ${f.startAt} is in the past (now ${(Number(realtimeNowNs() / 1_000_000n) / 1000).toFixed(3)}); give a future Unix time, e.g. $(( $(date +%s) + 5 ))`);
    }
    const engine = parseEngine(f.engine);
    const onLinkDown = parseLinkDownPolicy(f.onLinkDown);
    const paced = !!(pacing.pps || pacing.bps || pacing.gapNs || pacing.burstGapNs);
    const batch = intArg(f.batch ?? (paced ? '64' : '256'), '--batch', 1, 1024)!;
    const threads = intArg(f.threads, '--threads', 1, 64)!;
    if (threads > 1 && engine !== 'native') throw new UsageError('--threads needs --engine native');
    if (threads > 1 && (pacing.pps || pacing.bps || pacing.gapNs || pacing.burst || startAt)) {
      throw new UsageError('--threads > 1 is for unpaced runs: it cannot be combined with --rate, --gap, --burst or --start-at');
    }
    const flowsN = intArg(f.flows, '--flows', 1, 65536);
    const toFile = f.write !== undefined;
    if (f.pcapNano && !toFile) throw new UsageError('--pcap-nano is for the pcap file: add -w FILE');
    if (!f.iface && !toFile) throw new UsageError('blast needs an interface: -i IF (or -w FILE with --dst-mac, --src-mac and --from)');
    if (toFile) {
      // A file takes what the NIC would: the pcap engine's loop, writing; a run with no end would fill the disk.
      if (f.engine === 'native') throw new UsageError('-w writes with the pcap engine: drop --engine native');
      if (threads > 1 || f.qdiscBypass) throw new UsageError('--threads and --qdisc-bypass are for a NIC, not for -w FILE');
      if (count === 0 && durationNs === 0) throw new UsageError('blast -w needs an end: give --count N or --duration TIME');
    }
    const opts = {
      ...senderOptionsFromFlags({ ...f, size: undefined, write: undefined, udpChecksum: f.udpChecksum }),
      writePcap: f.write, pcapNano: !!f.pcapNano,
      // IPv6 has no IP ID (refuseOverIpv6 refused a given one): nothing to count.
      ...(v6 ? { ipId: undefined } : {}),
    };
    // One family per run, said before anything is opened (the sender would say it too, but after the native socket).
    const gw = opts.gateway;
    for (const [opt, given, fam] of [['--from', f.from, opts.from?.family ?? 4], ['--gateway', f.gateway, typeof gw === 'object' ? gw.family : 4]] as const) {
      if (given !== undefined && fam !== family) {
        throw new UsageError(`${opt} ${given} is IPv${fam} but --to ${f.to} is IPv${family}: give an IPv${family} ${opt} (or an IPv${fam} --to)`);
      }
    }
    if (!v6 && opts.flowLabel) throw new UsageError(`--flow-label ${f.flowLabel} is IPv6 only (the IPv4 header has no flow label) and --to ${f.to} is IPv4`);
    let srcIps: BlastAddr[] | undefined;
    if (f.srcIp !== undefined && v6) srcIps = parseIpv6Range(f.srcIp);
    else if (f.srcIp !== undefined) {
      if (f.srcIp.includes(':')) throw new UsageError(`bad --src-ip '${f.srcIp}': an IPv6 source, but --to ${f.to} is IPv4; give IPv4 addresses like 10.0.0.1-10.0.0.16 (or an IPv6 --to)`);
      const [lo, hi] = rangeArg(f.srcIp, '--src-ip', 0, 0xffffffff, (x) => parseIpv4(x, '--src-ip'), formatIpv4);
      if (hi - lo >= 65536) throw new UsageError(`--src-ip range ${f.srcIp} is too wide: at most 65536 addresses`);
      srcIps = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
    }
    // The flows and the template count before anything is opened.
    const distinct = distinctSizes(sizes);
    const unfit = distinct.find((s) => s < lim.min || s > lim.max); // --imix alone: the simple IMIX's own sizes
    if (unfit !== undefined) {
      const imix6 = v6 ? `; over IPv6 give the sizes, e.g. --size ${lim.min},576,${lim.max} --imix 7,4,1` : '';
      parseSizes(String(unfit), undefined, { ...lim, why: `${f.iface ?? 'a pcap file'} (MTU ${mtu}; from the simple IMIX${imix6})` });
    }
    const flowsPlanned = makeFlows({ srcIps: srcIps ?? [v6 ? Buffer.alloc(IPV6_ADDR_LEN) : 0], srcPorts, dstPorts, flows: flowsN }).length;
    if (flowsPlanned * distinct.length > 1 << 20) {
      throw new UsageError(`${flowsPlanned} flows × ${distinct.length} sizes is too many templates (max 1048576): narrow --flows or --size`);
    }

    checkDropFiles(f.relinquishPrivileges, { write: f.write });
    const from = opts.from ?? (srcIps ? (v6 ? { family: 6 as const, ip6: srcIps[0] as Buffer } : { ip: srcIps[0] as number }) : undefined);
    const target = to.addr.family === 6
      ? { family: 6 as const, ip6: to.addr.ip6, port: dstPorts[0], ...(to.addr.zone !== undefined ? { zone: to.addr.zone } : {}) }
      : { ip: dstIp, port: dstPorts[0] };
    // From here on a signal stops the run, not the process (one that comes during ARP takes effect when ARP is done).
    let interrupted = null as StopSignal | null;
    let stopRun = () => {};
    const unlisten = onStopSignal((sig) => {
      interrupted = sig;
      stopRun();
    });
    let sender: UdpSender;
    // The native engine blasts on its own AF_PACKET socket, the sender's Link: the sender opens a libpcap handle only
    // to answer ARP for a --from the host does not own.
    let nativeLink: NativeLink | undefined;
    try {
      if (engine === 'native' && !toFile) nativeLink = NativeLink.open(f.iface!, { qdiscBypass: !!f.qdiscBypass });
      sender = await UdpSender.open({ ...opts, to: target, srcPort: srcPorts[0], from, link: nativeLink });
    } catch (e) {
      unlisten();
      throw e;
    }
    let result: BlastResult;
    let gone = false;
    try {
      await relinquishPrivileges(f.relinquishPrivileges);
      const dst: BlastAddr = v6 ? sender.dstIp6! : dstIp;
      const flows = makeFlows({ srcIps: srcIps ?? [v6 ? sender.srcIp6! : sender.srcIp], srcPorts, dstPorts, flows: flowsN });
      const templates = buildTemplates({
        srcMac: sender.srcMac, dstMac: sender.dstMac, dstIp: dst, flows, sizes, seq, mtu: sender.mtu,
        ttl: opts.ttl, tos: opts.tos, df: opts.df, flowLabel: opts.flowLabel, vlan: opts.vlan, ipChecksum: opts.ipChecksum, udpChecksum: opts.udpChecksum,
        ipId: opts.ipId ?? 'counter',
      });
      const tty = process.stderr.isTTY && f.progress !== false && !f.json;
      const t0 = Date.now();
      const label = f.iface ?? (f.write === '-' ? 'standard output' : f.write!);
      const run = startBlast({
        engine: toFile ? 'pcap' : engine, iface: label, link: toFile ? sender.sendLink : sender.link, nativeLink, templates, count, durationNs, pacing, startAt, batch, threads,
        qdiscBypass: !!f.qdiscBypass, progressMs: 250, onLinkDown,
        onProgress: tty ? (p) => {
          const s = p.elapsedNs / 1e9;
          process.stderr.write(`\r\x1b[K${p.sent} sent  ${s > 0 ? Math.round(p.sent / s) : 0} pps  ${s > 0 ? (p.bytes * 8 / s / 1e6).toFixed(1) : '0.0'} Mbit/s  ${p.waits} queue waits  ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        } : undefined,
      });
      // One event line per outage's start and end. The pcap engine's handle watches its link; the native engine's
      // socket does not (its C loop reads the flags itself, for the counts), so blast watches for the event lines.
      // A pcap file has no link to watch.
      const ownWatch = !toFile && (engine === 'native' || !sender.link) ? new LinkWatch(f.iface!, 20) : null;
      const watch = toFile ? null : ownWatch ?? sender.link!.watch;
      const offLink = watch ? reportLinkEvents(watch, eventWriter('blast', f.json), () => {
        gone = true;
        run.stop();
      }) : () => {};
      stopRun = () => run.stop();
      if (interrupted) run.stop();
      try {
        result = await run.done;
      } finally {
        watch?.check(); // a run that ended on the link (stop, gone) may have ended before the watch's next poll
        offLink();
        ownWatch?.close();
        if (tty) process.stderr.write('\r\x1b[K');
      }
      await sender.close();
      const d = { dstMac: formatMac(sender.dstMac), via: sender.nextHop ? sender.nextHop.via : 'given' };
      const summary = {
        ...result, engine: toFile ? 'pcap-file' : result.engine, iface: f.iface ?? null, pcapFile: f.write ?? null, flows: flows.length, flowDesc: describeFlows(flows, dst), family,
        dst: formatEndpoint({ ...addrOf(dst), port: dstPorts[0] }), dstMac: d.dstMac, via: d.via,
        arpMs: sender.arpMs === null ? null : Math.round(sender.arpMs * 1000) / 1000,
        meanFrameBytes: Math.round(templates.meanLen * 100) / 100, maxRssKiB: process.resourceUsage().maxRSS, onLinkDown,
        interrupted,
      };
      // With -w - standard output carries the pcap: the summary goes to standard error, as tcpdump's does.
      const out = f.write === '-' ? process.stderr : process.stdout;
      if (f.json) {
        const { nextSeq, ...rest } = summary;
        out.write(JSON.stringify({ ...rest, lastSeq: nextSeq.slice(0, 1024).map((s) => s - 1) }) + '\n');
      } else {
        const r = summary;
        const sig = r.interrupted;
        const times = r.linkOutages === 1 ? 'once' : `${r.linkOutages} times`;
        const link = r.linkOutages || r.notSentLinkDown
          ? `; link down ${times} for ${(r.linkDownMs / 1000).toFixed(3)} s: ${r.notSentLinkDown} frames not sent (due while it was down)` : '';
        const pace = r.requestedPps !== null && r.rateError !== null
          ? `, requested ${Math.round(r.requestedPps)} pps (error ${(r.rateError * 100).toFixed(3)}%, worst lateness ${r.lateMaxUs} µs)` : '';
        if (sig && !r.started) {
          out.write(`0 frames sent: interrupted (${sig}) before ${startAt ? '--start-at' : 'the first frame'}; ${toFile ? `written to ${label}` : `engine ${r.engine}`}; ${r.flowDesc} via ${r.dstMac}\n`);
        } else out.write(`${r.sent} frames, ${r.bytes} bytes in ${r.seconds.toFixed(3)} s: ${r.pps} pps, ${(r.bitsPerSecond / 1e6).toFixed(1)} Mbit/s` +
          `${pace}; ${toFile ? `written to ${label}` : `engine ${r.engine}`}; ${r.flowDesc} via ${r.dstMac}` +
          (r.startedLateUs !== null ? `; started ${r.startedLateUs} µs after --start-at` : '') +
          `; ${r.notSent} not sent, ${r.waits} queue waits${link}` + (sig ? `; interrupted (${sig})` : '') + '\n');
      }
    } catch (e) {
      unlisten();
      sender.abort();
      throw e;
    }
    unlisten();
    if (result.linkEnd === 'gone' || gone) throw new LinkGoneError(f.iface!);
    if (result.error) {
      const why = result.linkEnd === 'down' ? `${result.error} and --on-link-down is stop` : result.error;
      process.stderr.write(`rawpoll: blast stopped: ${why} (${result.notSent + result.notSentLinkDown} frames not sent)\n`);
      process.exitCode = 1;
    } else if (interrupted) process.exitCode = interruptedExitCode(interrupted, count > 0 || durationNs > 0);
  });
}

function addrOf(a: BlastAddr): IpAddress {
  return typeof a === 'number' ? { family: 4, ip: a } : { family: 6, ip6: a };
}

/**
 * A short human label for a flow list: "10.0.0.1:10000-10015 -> 10.0.0.2:9 (16 flows)"; over IPv6 the addresses in
 * brackets, as an endpoint is written: "[fd00::10-fd00::1f]:9 -> [fd00::2]:9 (16 flows)".
 */
export function describeFlows(flows: Flow[], dstIp: BlastAddr): string {
  const r = (xs: number[]) => {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? String(lo) : `${lo}-${hi}`;
  };
  let srcIps: string;
  let dst: string;
  if (typeof dstIp === 'number') {
    const ips = flows.map((f) => f.srcIp as number);
    const lo = Math.min(...ips);
    const hi = Math.max(...ips);
    srcIps = lo === hi ? formatIpv4(lo) : `${formatIpv4(lo)}-${formatIpv4(hi)}`;
    dst = formatIpv4(dstIp);
  } else {
    const ips = flows.map((f) => f.srcIp as Buffer).sort(Buffer.compare);
    const lo = ips[0];
    const hi = ips[ips.length - 1];
    srcIps = `[${lo.equals(hi) ? formatIpv6Addr(lo) : `${formatIpv6Addr(lo)}-${formatIpv6Addr(hi)}`}]`;
    dst = `[${formatIpv6Addr(dstIp)}]`;
  }
  return `${srcIps}:${r(flows.map((f) => f.srcPort))} -> ${dst}:${r(flows.map((f) => f.dstPort))} (${flows.length} flow${flows.length === 1 ? '' : 's'})`;
}
