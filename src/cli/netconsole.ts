import { accessSync, constants, statSync } from 'node:fs';
import { Command } from 'commander';
import { LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { ifaceInfo, listInterfaces } from '../link/iface.js';
import { NETCONSOLE_DST_PORT, NETCONSOLE_SRC_PORT, parseNetconsoleConfig } from '../proto/netconsole.js';
import { runNetconsole, SYSDATA_FIELDS, type NetconsoleTargetOptions, type SysdataField } from '../tx/netconsole.js';
import { parseEndpointAny } from '../wire/endpoint.js';
import { MAC_BROADCAST, formatMac } from '../wire/mac.js';
import { dropPrivileges } from '../host/privdrop.js';
import {
  addDropOption, addFrameOptions, addLinkOptions, checkDropFiles, countArg, eventWriter, interruptedExitCode, intArg, onStopSignal, reportLinkEvents,
  senderOptionsFromFlags, type EventWriter, type FrameFlags, type StopSignal,
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
// configfs limits (netconsole.c): name <= 53, value <= 200, at most 16 userdata + sysdata entries.
const MAX_KEY = 53;
const MAX_VALUE = 200;
const MAX_ENTRIES = 16;

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
      'The target MAC is ARP-resolved, or NDP-resolved over IPv6 (the kernel would broadcast: --broadcast does that). Runs until the input ends ' +
      '(stdin) or until SIGINT/SIGTERM (--follow, --kmsg), then prints a summary.')
    .option('--to <IP[:PORT]>', `target address (port default ${NETCONSOLE_DST_PORT}): 10.0.0.9, 10.0.0.9:6666, fd00::9 or [fd00::9]:6666`)
    .option('--config <STRING>', "the kernel's netconsole= syntax: [+][r][src-port]@[src-ip]/[dev],[tgt-port]@<tgt-ip>/[tgt-mac], several targets separated by ';'; " +
      'IPv6 addresses bare as the kernel writes them (@fd00::7/eth1,@fd00::9/); dev may be the local interface\'s MAC')
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
  addFrameOptions(cmd, 'print JSON lines: a ready event once the targets are resolved, a line per link event, then the summary ' +
    '(schemas/netconsole.schema.json)');
  addDropOption(cmd, 'once every target is open and resolved, and the input (/dev/kmsg, the --follow file) too (before the first message)');
  cmd.addHelpText('after', '\nExamples:\n' +
    '  dmesg | sudo rawpoll netconsole -i eth1 --to 10.0.0.9\n' +
    "  sudo rawpoll netconsole --config '+r6665@10.0.0.7/eth1,6666@10.0.0.9/02:00:00:00:00:09' < app.log\n" +
    "  dmesg | sudo rawpoll netconsole -i eth1 --to '[fd00::9]:6666'\n" +
    "  sudo rawpoll netconsole --config '+@fd00::7/02:00:00:00:00:07,6666@fd00::9/' < app.log   (dev given by its MAC)\n" +
    '  sudo rawpoll netconsole -i eth1 --to 10.0.0.9 --extended --kmsg --userdata dc=fra1 --sysdata\n' +
    '  sudo rawpoll netconsole -i eth1 --to 10.0.0.9 --follow /var/log/app.log\n' +
    'Receive with: nc -u -l 6666, socat -u udp-recv:6666 -, or rawpoll collect --netconsole 6666.\n\n' +
    'Exit codes: 0 done, or stopped by SIGINT/SIGTERM while following (--follow, --kmsg without --count);\n' +
    '1 runtime failure (no ARP/NDP reply, no permission); 2 bad usage (nothing sent); 130 (SIGINT) or 143 (SIGTERM)\n' +
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

function parseSysdata(v: boolean | string | undefined): Set<SysdataField> | null {
  if (v === undefined || v === false) return null;
  if (v === true) return new Set(SYSDATA_FIELDS);
  const set = new Set<SysdataField>();
  for (const x of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(SYSDATA_FIELDS as readonly string[]).includes(x)) throw new UsageError(`bad --sysdata field '${x}': expected some of ${SYSDATA_FIELDS.join(',')}`);
    set.add(x as SysdataField);
  }
  return set;
}

function ifaceByMac(mac: Buffer): string {
  for (const name of listInterfaces()) {
    try {
      if (ifaceInfo(name).mac.equals(mac)) return name;
    } catch { /* skip */ }
  }
  throw new UsageError(`no interface here has MAC ${formatMac(mac)} (from --config)`);
}

function planTargets(f: NetconsoleFlags): NetconsoleTargetOptions[] {
  const base = senderOptionsFromFlags(f);
  if (f.broadcast && f.dstMac) throw new UsageError('--broadcast and --dst-mac contradict each other: choose one');
  const bcast = f.broadcast ? MAC_BROADCAST : undefined;
  if (f.config !== undefined) {
    if (f.to !== undefined) throw new UsageError('give the target with --to or --config, not both');
    return parseNetconsoleConfig(f.config).map((t) => {
      const iface = t.dev ?? (t.devMac ? ifaceByMac(t.devMac) : f.iface);
      if (!iface) throw new UsageError(`--config '${f.config}' names no interface: put it after the source IP (…@IP/eth1,…) or add -i IF`);
      const from = t.src !== null ? { ...t.src, port: t.srcPort } : base.from;
      return {
        sender: { ...base, iface, from, srcPort: t.srcPort, to: { ...t.dst, port: t.dstPort }, dstMac: t.dstMac ?? bcast ?? base.dstMac },
        extended: t.extended || !!f.extended,
        release: t.release || !!f.release,
      };
    });
  }
  if (f.to === undefined) throw new UsageError('no target: give --to IP[:PORT] (with -i IF) or --config STRING');
  if (!f.iface && !f.write) throw new UsageError('no interface: give -i IF (or use --config with the device in it)');
  return [{
    sender: { ...base, to: parseEndpointAny(f.to, '--to', NETCONSOLE_DST_PORT), srcPort: base.from?.port ?? NETCONSOLE_SRC_PORT, dstMac: bcast ?? base.dstMac },
    extended: !!f.extended,
    release: !!f.release,
  }];
}

/**
 * --follow FILE before any target is opened (no ARP for a run that cannot read): a directory is bad usage; a file
 * that is there but unreadable is a runtime failure. A missing file is fine: like tail -F, it is waited for.
 */
function checkFollowPath(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new RuntimeError(`cannot follow ${path}: ${(e as Error).message}`);
  }
  if (st.isDirectory()) throw new UsageError(`bad --follow '${path}': it is a directory; expected a file to follow (a log file, even one not yet created)`);
  try {
    accessSync(path, constants.R_OK);
  } catch (e) {
    throw new RuntimeError(`cannot follow ${path}: ${(e as Error).message}`);
  }
}

async function run(f: NetconsoleFlags): Promise<void> {
  if (f.kmsg && f.follow) throw new UsageError('--kmsg and --follow are two sources: choose one');
  if (f.fromStart && !f.kmsg && f.follow === undefined) {
    throw new UsageError('--from-start is for --kmsg (the oldest record in the ring) or --follow FILE (the whole file); standard input starts where it starts');
  }
  if (f.follow !== undefined) checkFollowPath(f.follow);
  checkDropFiles(f.relinquishPrivileges, { write: f.write, follow: f.follow });
  const count = countArg(f.count);
  const level = parseLevel(f.level ?? 'info');
  const userdata = parseUserdata(f.userdata ?? []);
  const sysdata = parseSysdata(f.sysdata);
  if (userdata.length + (sysdata?.size ?? 0) > MAX_ENTRIES) {
    throw new UsageError(`too many --userdata/--sysdata entries (${userdata.length + (sysdata?.size ?? 0)}): the kernel allows ${MAX_ENTRIES}`);
  }
  const targets = planTargets(f);
  // One pcap file holds one stream: several targets would each write a header into it (or rename over each other).
  if (f.write !== undefined && targets.length > 1) {
    throw new UsageError(`-w ${f.write} takes one target, --config names ${targets.length}: write one pcap per run`);
  }
  const linkQueue = intArg(f.linkQueue, '--link-queue', 0, 10_000_000)!;
  if (targets.some((t) => !t.extended && (userdata.length || sysdata || t.release))) {
    throw new UsageError('--release, --userdata and --sysdata need the extended format: add --extended (or \'+\' in --config)');
  }

  // With -w - standard output carries the pcap: events and the summary go to standard error, as tcpdump's do.
  const toStdout = f.write === '-';
  const out = toStdout ? process.stderr : process.stdout;
  const write: EventWriter = toStdout
    ? (e, human) => process.stderr.write(f.json ? JSON.stringify(e) + '\n' : `rawpoll netconsole: ${human}\n`)
    : eventWriter('netconsole', f.json);
  // "ready" comes once the targets and the input are open, before the first message: -Z gives up root there (a
  // failure is thrown inside the run, which closes the targets).
  const drop = f.relinquishPrivileges;
  const event: EventWriter = (e, human) => {
    if (e.event === 'ready' && drop) dropPrivileges(drop);
    write(e, human);
  };
  const s = await runNetconsole({
    targets, level, userdata, sysdata, count, linkQueue, event,
    input: f.kmsg ? { kind: 'kmsg', fromStart: f.fromStart } : f.follow ? { kind: 'follow', path: f.follow, fromStart: f.fromStart }
      : { kind: 'lines', stream: process.stdin, name: 'stdin' },
    // One event line per outage's start and end, and the interface's disappearance.
    onLink: (watch) => reportLinkEvents(watch, event),
    // Once the targets are open, a signal ends the run with its summary, not the process.
    interrupt: (stop) => onStopSignal(stop),
  });
  const { gone, ...rest } = s;
  const interrupted = s.interrupted as StopSignal | null;
  const dropped = s.targets.reduce((a, t) => a + t.droppedQueueFull + t.notSentLinkDown, 0);
  const outages = s.targets.reduce((a, t) => a + t.linkOutages, 0);
  if (f.json) out.write(JSON.stringify({ event: 'summary', ...rest }) + '\n');
  else {
    const { messages, datagrams, lostKmsgRecords: lost } = s;
    out.write(`${messages} message${messages === 1 ? '' : 's'} in ${datagrams} datagram${datagrams === 1 ? '' : 's'} (${s.payloadBytes} bytes) to ` +
      `${s.targets.map((t) => t.dst).join(', ')}${lost ? `, ${lost} kernel records lost to overruns` : ''}` +
      (outages ? `; ${outages} link outage${outages === 1 ? '' : 's'}, ${s.targets.reduce((a, t) => a + t.queuedWhileDown, 0)} datagrams queued, ${dropped} dropped while down` : '') +
      ` — stopped: ${s.stopped}\n`);
  }
  if (gone) throw new LinkGoneError(gone);
  if (interrupted) process.exitCode = interruptedExitCode(interrupted, count !== undefined || (!f.kmsg && !f.follow));
  if (!process.stdin.destroyed && !f.kmsg && !f.follow) process.stdin.destroy();
}
