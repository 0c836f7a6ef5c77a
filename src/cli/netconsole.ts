import { readFileSync } from 'node:fs';
import { release as osRelease } from 'node:os';
import { Command } from 'commander';
import { LinkDownError, LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { ifaceInfo, listInterfaces } from '../link/iface.js';
import {
  NETCONSOLE_DST_PORT, NETCONSOLE_SRC_PORT, NetconsoleFormatter, parseNetconsoleConfig, type NetconsoleFormatOptions,
} from '../proto/netconsole.js';
import { UdpSender, type SenderOptions } from '../tx/sender.js';
import { LinkQueue } from '../tx/linkqueue.js';
import { followLines, kmsgRecords, streamLines } from '../tx/sources.js';
import { formatIpv4, parseEndpoint } from '../wire/addr.js';
import { MAC_BROADCAST, formatMac } from '../wire/mac.js';
import {
  addFrameOptions, addLinkOptions, eventWriter, interruptedExitCode, intArg, onStopSignal, reportLinkEvents, senderOptionsFromFlags,
  type FrameFlags, type StopSignal,
} from './common.js';

interface NetconsoleFlags extends FrameFlags {
  to?: string;
  config?: string;
  extended?: boolean;
  release?: boolean;
  kmsg?: boolean;
  fromStart?: boolean;
  follow?: string;
  level?: string;
  userdata: string[];
  sysdata?: boolean | string;
  broadcast?: boolean;
  count?: string;
  linkQueue?: string;
}

const LEVELS = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
const SYSDATA_FIELDS = ['cpu', 'taskname', 'release', 'msgid'];
// configfs limits (netconsole.c): name <= 53, value <= 200, at most 16 userdata + sysdata entries.
const MAX_KEY = 53;
const MAX_VALUE = 200;
const MAX_ENTRIES = 16;

interface Target {
  sender: UdpSender;
  fmt: NetconsoleFormatter;
  extended: boolean;
  sent: number;
  /** Datagrams waiting for the link to come back. */
  queue: LinkQueue;
}

export function register(program: Command): void {
  const cmd = program
    .command('netconsole')
    .summary('a userland netconsole: log lines or the kernel log as netconsole UDP datagrams')
    .description('Send log messages the way Linux netconsole does: UDP 6665 -> 6666, at most 1000 bytes per datagram. ' +
      'Messages come from standard input (one per line), from a file followed like tail -F (--follow), or from the ' +
      'kernel log (--kmsg).\n\n' +
      'Basic format: the text itself. Extended format (--extended, the kernel\'s \'+\'): ' +
      '`<prio>,<seq>,<usec>,<flag>;<text>` with escaping; longer messages are split with ncfrag=<offset>/<total> ' +
      'exactly as the kernel does.\n\n' +
      'The target MAC is ARP-resolved (the kernel would broadcast: --broadcast does that). Runs until the input ends ' +
      '(stdin) or until SIGINT/SIGTERM (--follow, --kmsg), then prints a summary.')
    .option('--to <IP[:PORT]>', `target address (port default ${NETCONSOLE_DST_PORT})`)
    .option('--config <STRING>', "the kernel's netconsole= syntax: [+][r][src-port]@[src-ip]/[dev],[tgt-port]@<tgt-ip>/[tgt-mac], several targets separated by ';'")
    .option('--extended', "extended format (the kernel's '+')")
    .option('--release', "prepend the kernel release (uname -r) to every extended message (the kernel's 'r')")
    .option('--kmsg', 'forward the kernel log from /dev/kmsg (its own level, seq and timestamp), from now on')
    .option('--from-start', 'with --kmsg: begin with the oldest record still in the ring buffer; with --follow: with the whole file')
    .option('--follow <FILE>', 'send lines appended to FILE, like tail -F (survives rotation and truncation)')
    .option('--level <N|NAME>', 'log level of lines from stdin/--follow in the extended format: 0-7 or emerg..debug', 'info')
    .option('--userdata <KEY=VALUE>', 'append " KEY=VALUE" to every extended message (repeatable)', collect, [])
    .option('--sysdata [FIELDS]', `append kernel-style sysdata lines: comma list of ${SYSDATA_FIELDS.join(',')} (default all)`)
    .option('--broadcast', 'send to ff:ff:ff:ff:ff:ff like the kernel does without a target MAC (no ARP)')
    .option('-c, --count <N>', 'stop after N messages')
    .option('--link-queue <N>', 'datagrams kept per target while its link is down, sent when it is back; past N the oldest are dropped and counted', '1000');
  addLinkOptions(cmd);
  addFrameOptions(cmd);
  cmd.addHelpText('after', '\nExamples:\n' +
    '  dmesg | sudo rawpoll netconsole -i eth1 --to 10.0.0.9\n' +
    "  sudo rawpoll netconsole --config '+r6665@10.0.0.7/eth1,6666@10.0.0.9/02:00:00:00:00:09' < app.log\n" +
    '  sudo rawpoll netconsole -i eth1 --to 10.0.0.9 --extended --kmsg --userdata dc=fra1 --sysdata\n' +
    '  sudo rawpoll netconsole -i eth1 --to 10.0.0.9 --follow /var/log/app.log\n' +
    'Receive with: nc -u -l 6666, socat -u udp-recv:6666 -, or rawpoll collect --netconsole 6666.\n\n' +
    'Exit codes: 0 done, or stopped by SIGINT/SIGTERM while following (--follow, --kmsg without --count);\n' +
    '1 runtime failure (no ARP reply, no permission); 2 bad usage (nothing sent); 130 (SIGINT) or 143 (SIGTERM)\n' +
    'when a signal cut short standard input or a --count run (after the summary).');
  cmd.action(async (f: NetconsoleFlags) => run(f));
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function parseLevel(v: string): number {
  const t = v.trim().toLowerCase();
  const i = LEVELS.indexOf(t);
  if (i >= 0) return i;
  if (/^[0-7]$/.test(t)) return Number(t);
  throw new UsageError(`bad --level '${v}': expected 0-7 or one of ${LEVELS.join(', ')}`);
}

function parseUserdata(items: string[]): Array<[string, string]> {
  return items.map((s) => {
    const i = s.indexOf('=');
    const k = i > 0 ? s.slice(0, i) : '';
    const v = i > 0 ? s.slice(i + 1) : '';
    if (!k || /[\s=]/.test(k) || k.length > MAX_KEY) {
      throw new UsageError(`bad --userdata '${s}': expected KEY=VALUE with a key of 1-${MAX_KEY} characters, no spaces`);
    }
    if (!v || v.length > MAX_VALUE || /[\n]/.test(v)) {
      throw new UsageError(`bad --userdata '${s}': the value must be 1-${MAX_VALUE} characters on one line`);
    }
    return [k, v];
  });
}

function parseSysdata(v: boolean | string | undefined): Set<string> | null {
  if (v === undefined || v === false) return null;
  if (v === true) return new Set(SYSDATA_FIELDS);
  const set = new Set<string>();
  for (const x of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!SYSDATA_FIELDS.includes(x)) throw new UsageError(`bad --sysdata field '${x}': expected some of ${SYSDATA_FIELDS.join(',')}`);
    set.add(x);
  }
  return set;
}

/** The CPU this process last ran on (field 39 of /proc/self/stat), the kernel's raw_smp_processor_id(). */
function currentCpu(): number {
  try {
    const s = readFileSync('/proc/self/stat', 'latin1');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[36]) || 0;
  } catch {
    return 0;
  }
}

function taskName(): string {
  try {
    return readFileSync('/proc/self/comm', 'utf8').trim();
  } catch {
    return 'rawpoll';
  }
}

function ifaceByMac(mac: Buffer): string {
  for (const name of listInterfaces()) {
    try {
      if (ifaceInfo(name).mac.equals(mac)) return name;
    } catch { /* skip */ }
  }
  throw new UsageError(`no interface here has MAC ${formatMac(mac)} (from --config)`);
}

interface TargetPlan { opts: SenderOptions; extended: boolean; release: boolean }

function planTargets(f: NetconsoleFlags): TargetPlan[] {
  const base = senderOptionsFromFlags(f);
  if (f.broadcast && f.dstMac) throw new UsageError('--broadcast and --dst-mac contradict each other: choose one');
  const bcast = f.broadcast ? MAC_BROADCAST : undefined;
  if (f.config !== undefined) {
    if (f.to !== undefined) throw new UsageError('give the target with --to or --config, not both');
    return parseNetconsoleConfig(f.config).map((t) => {
      const iface = t.dev ?? (t.devMac ? ifaceByMac(t.devMac) : f.iface);
      if (!iface) throw new UsageError(`--config '${f.config}' names no interface: put it after the source IP (…@IP/eth1,…) or add -i IF`);
      const from = t.srcIp !== null ? { ip: t.srcIp, port: t.srcPort } : base.from;
      return {
        opts: { ...base, iface, from, srcPort: t.srcPort, to: { ip: t.dstIp, port: t.dstPort }, dstMac: t.dstMac ?? bcast ?? base.dstMac },
        extended: t.extended || !!f.extended,
        release: t.release || !!f.release,
      };
    });
  }
  if (f.to === undefined) throw new UsageError('no target: give --to IP[:PORT] (with -i IF) or --config STRING');
  if (!f.iface && !f.write) throw new UsageError('no interface: give -i IF (or use --config with the device in it)');
  return [{
    opts: { ...base, to: parseEndpoint(f.to, '--to', NETCONSOLE_DST_PORT), srcPort: base.from?.port ?? NETCONSOLE_SRC_PORT, dstMac: bcast ?? base.dstMac },
    extended: !!f.extended,
    release: !!f.release,
  }];
}

async function run(f: NetconsoleFlags): Promise<void> {
  if (f.kmsg && f.follow) throw new UsageError('--kmsg and --follow are two sources: choose one');
  const count = intArg(f.count, '--count', 1, 2 ** 31);
  const level = parseLevel(f.level ?? 'info');
  const userdata = parseUserdata(f.userdata ?? []);
  const sysFields = parseSysdata(f.sysdata);
  if (userdata.length + (sysFields?.size ?? 0) > MAX_ENTRIES) {
    throw new UsageError(`too many --userdata/--sysdata entries (${userdata.length + (sysFields?.size ?? 0)}): the kernel allows ${MAX_ENTRIES}`);
  }
  const plans = planTargets(f);
  const queueLimit = intArg(f.linkQueue, '--link-queue', 0, 10_000_000)!;
  const rel = osRelease();
  const formatters = plans.map((p) => {
    const o: NetconsoleFormatOptions = { extended: p.extended, level };
    if (p.release) o.release = rel;
    if (p.extended) {
      if (userdata.length) o.userdata = userdata;
      if (sysFields) {
        o.sysdata = {
          cpu: sysFields.has('cpu') ? currentCpu : undefined,
          taskname: sysFields.has('taskname') ? taskName() : undefined,
          release: sysFields.has('release') ? rel : undefined,
          msgid: sysFields.has('msgid'),
        };
      }
    } else if (userdata.length || sysFields || p.release) {
      throw new UsageError('--release, --userdata and --sysdata need the extended format: add --extended (or \'+\' in --config)');
    }
    return new NetconsoleFormatter(o);
  });

  const targets: Target[] = [];
  try {
    for (let i = 0; i < plans.length; i++) {
      targets.push({ sender: await UdpSender.open(plans[i].opts), fmt: formatters[i], extended: plans[i].extended, sent: 0, queue: new LinkQueue(queueLimit) });
    }
  } catch (e) {
    for (const t of targets) t.sender.abort();
    throw e;
  }

  const ac = new AbortController();
  let stopReason = 'end of input';
  let interrupted = null as StopSignal | null;
  const unlisten = onStopSignal((sig) => {
    if (ac.signal.aborted) return; // already ending (count reached, interface gone): the signal changes nothing
    interrupted = sig;
    stopReason = sig;
    ac.abort();
  });

  const event = eventWriter('netconsole', f.json);
  // The link-state policy: a target whose link is down queues (--link-queue) and sends when it is back; a vanished
  // interface ends the run after the summary, with exit 1.
  let gone: string | null = null;
  const endGone = (iface: string) => {
    gone = gone ?? iface;
    stopReason = `interface ${iface} disappeared`;
    ac.abort();
  };
  const send = (t: Target, d: Buffer) => {
    t.sender.send(d);
    t.sent++;
  };
  const detach = targets.map((t) => {
    const link = t.sender.link;
    if (!link) return () => {};
    const flushOnUp = () => {
      if (t.queue.length && t.queue.flush((d) => send(t, d))) {
        event({ event: 'link-queue-flushed', iface: link.iface, sent: t.queue.queuedTotal - t.queue.dropped, dropped: t.queue.dropped },
          `link ${link.iface}: queued datagrams sent${t.queue.dropped ? `, ${t.queue.dropped} dropped (queue full)` : ''}`);
      }
    };
    link.watch.on('up', flushOnUp);
    const off = reportLinkEvents(link.watch, event, () => endGone(link.iface));
    return () => {
      off();
      link.watch.removeListener('up', flushOnUp);
    };
  });
  const ready = () => {
    const desc = targets.map((t) => {
      const d = t.sender.describe();
      return { src: `${d.srcIp}:${d.srcPort}`, dst: `${d.dstIp}:${d.dstPort}`, dstMac: d.dstMac, via: d.via,
        arpMs: t.sender.arpMs === null ? null : Math.round(t.sender.arpMs * 1000) / 1000, extended: t.extended,
        iface: t.sender.iface?.name ?? null };
    });
    const source = f.kmsg ? 'kmsg' : f.follow ? `follow ${f.follow}` : 'stdin';
    event({ event: 'ready', source, targets: desc },
      `${source} -> ${desc.map((d) => `${d.dst} [${d.dstMac}${d.arpMs === null ? '' : `, ARP ${d.arpMs} ms`}]${d.extended ? ' extended' : ''}`).join(', ')}`);
  };

  const t0 = process.hrtime.bigint();
  const usecNow = () => Number((process.hrtime.bigint() - t0) / 1000n);
  let messages = 0;
  let datagrams = 0;
  let payloadBytes = 0;
  let lost = 0;
  const sendAll = (make: (t: Target) => Buffer[]) => {
    for (const t of targets) {
      for (const d of make(t)) {
        datagrams++;
        payloadBytes += d.length;
        if (t.queue.length === 0) {
          try {
            send(t, d);
            continue;
          } catch (e) {
            if (e instanceof LinkGoneError) return endGone(e.iface);
            if (!(e instanceof LinkDownError)) throw e;
          }
        }
        t.queue.push(d);
      }
    }
    messages++;
    if (count !== undefined && messages >= count) { stopReason = 'count'; ac.abort(); }
  };

  try {
    if (f.kmsg) {
      const recs = kmsgRecords({
        fromStart: f.fromStart, signal: ac.signal, onReady: ready,
        onLost: (n, next) => {
          lost += n;
          event({ event: 'kmsg-lost', lost: n, nextSeq: next }, `kernel log overran us: ${n} record${n === 1 ? '' : 's'} lost before seq ${next}`);
        },
      });
      for await (const r of recs) {
        sendAll((t) => t.fmt.kmsg(r.raw, r.usec, r.text));
        if (ac.signal.aborted) break;
      }
    } else {
      const lines = f.follow
        ? followLines(f.follow, {
          // "ready" once the follower has fixed its start: a line written after it is never taken for an old one.
          fromStart: f.fromStart, signal: ac.signal, onReady: ready,
          onEvent: (e) => event({ event: `follow-${e.kind}`, path: e.path }, `${e.path} ${e.kind}`),
        })
        : streamLines(process.stdin, ac.signal);
      if (!f.follow) ready();
      for await (const line of lines) {
        const usec = usecNow();
        sendAll((t) => t.fmt.line(line, usec));
        if (ac.signal.aborted) break;
      }
    }
  } catch (e) {
    for (const t of targets) t.sender.abort();
    throw e instanceof UsageError || e instanceof RuntimeError ? e : new RuntimeError((e as Error).message);
  } finally {
    for (const off of detach) off();
    unlisten();
  }
  // What still waits for a link that did not come back before the end is not sent: counted, never silent.
  const unsent = targets.map((t) => t.queue.discard());
  const linkStats = targets.map((t) => t.sender.link?.watch).map((w) => ({ outages: w?.outages ?? 0, downMs: w ? w.downMsTotal + (w.downSince !== null ? Date.now() - w.downSince : 0) : 0 }));
  for (const t of targets) await t.sender.close();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const summary = {
    event: 'summary', stopped: stopReason, interrupted, messages, datagrams, payloadBytes, lostKmsgRecords: lost,
    seconds: Math.round(seconds * 1000) / 1000,
    targets: targets.map((t, i) => ({
      dst: `${formatIpv4(t.sender.dstIp)}:${t.sender.dstPort}`, dstMac: formatMac(t.sender.dstMac), datagrams: t.sent,
      linkOutages: linkStats[i].outages, linkDownMs: linkStats[i].downMs, queuedWhileDown: t.queue.queuedTotal,
      droppedQueueFull: t.queue.dropped, notSentLinkDown: unsent[i],
    })),
  };
  const dropped = summary.targets.reduce((a, t) => a + t.droppedQueueFull + t.notSentLinkDown, 0);
  const outages = summary.targets.reduce((a, t) => a + t.linkOutages, 0);
  if (f.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    process.stdout.write(`${messages} message${messages === 1 ? '' : 's'} in ${datagrams} datagram${datagrams === 1 ? '' : 's'} (${payloadBytes} bytes) to ` +
      `${summary.targets.map((t) => t.dst).join(', ')}${lost ? `, ${lost} kernel records lost to overruns` : ''}` +
      (outages ? `; ${outages} link outage${outages === 1 ? '' : 's'}, ${summary.targets.reduce((a, t) => a + t.queuedWhileDown, 0)} datagrams queued, ${dropped} dropped while down` : '') +
      ` — stopped: ${stopReason}\n`);
  }
  if (gone) throw new LinkGoneError(gone);
  if (interrupted) process.exitCode = interruptedExitCode(interrupted, count !== undefined || (!f.kmsg && !f.follow));
  if (!process.stdin.destroyed && !f.kmsg && !f.follow) process.stdin.destroy();
}
