import { Command, Option } from 'commander';
import { RuntimeError, UsageError } from '../errors.js';
import { dropPrivileges, modeAllows, resolveDropUser, type Account } from '../host/privdrop.js';
import { parseIpAddress, parseSourceAny, type IpAddress } from '../wire/endpoint.js';
import { parseMac } from '../wire/mac.js';
import type { SenderOptions } from '../tx/sender.js';
import { accessSync, chownSync, closeSync, constants as fsc, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join as joinPath, resolve as resolvePath } from 'node:path';
import { networkInterfaces } from 'node:os';
import type { IfaceInfo } from '../link/iface.js';
import { LinkWatch, linkStatus, type LinkDownEvent, type LinkUpEvent } from '../link/watch.js';

/** Options every sending command shares: where from, how to reach the next hop, and the IPv4/UDP profile. */
export interface FrameFlags {
  iface?: string;
  from?: string;
  gateway?: string;
  dstMac?: string;
  srcMac?: string;
  ttl?: string;
  tos?: string;
  dscp?: string;
  df?: boolean;
  ipId?: string;
  vlan?: string;
  size?: string;
  badIpChecksum?: boolean;
  badUdpChecksum?: boolean;
  flowLabel?: string;
  udpChecksum?: boolean; // commander's --no-udp-checksum sets this false
  retries?: string;
  timeout?: string;
  write?: string;
  json?: boolean;
  /** -Z USER, resolved when the command line was parsed (addDropOption). */
  relinquishPrivileges?: Account;
}

export function addLinkOptions(cmd: Command): Command {
  return cmd
    .option('-i, --iface <IF>', 'interface to send on (needs root or CAP_NET_RAW)')
    .option('--from <IP[/PREFIX][:PORT]>', "source address, of --to's family: 10.0.0.7/24:5000, [fd00::7/64]:5000 or bare fd00::7/64; default: the interface's first IPv4 address, or its first IPv6 address of the target's scope (global, or link-local for a link-local target), as netpoll picks it. Works on an interface without that address (rawpoll then answers ARP or NDP for it). /PREFIX says which targets are on-link")
    .option('--gateway <IP>', 'next hop for targets off-link (IPv4 or IPv6, as --to): its MAC is ARP/NDP-resolved instead of the target\'s')
    .option('--dst-mac <MAC>', 'destination MAC: skips ARP')
    .option('--retries <N>', 'ARP who-has requests before giving up', '3')
    .option('--timeout <MS>', 'wait for an ARP reply after each request, in ms', '1000');
}

/**
 * The IPv4/UDP frame profile every sending command shares (blast too): addresses, TTL/TOS/DF, IP ID, VLAN tag and the
 * named checksum corruptions. `unit` is what one IP ID step counts (a datagram, or a frame for blast).
 */
export function addFrameProfileOptions(cmd: Command, unit = 'datagram'): Command {
  return cmd
    .option('--src-mac <MAC>', "source MAC; default: the interface's")
    .option('--ttl <N>', 'IPv4 TTL, or the IPv6 hop limit (netpoll: 64)')
    .option('--tos <N>', 'IPv4 TOS byte or IPv6 traffic class, 0-255 or 0x00-0xff (e.g. 0xb8: DSCP EF)')
    .option('--flow-label <N>', 'IPv6 flow label, 0-1048575 or 0x00000-0xfffff (netpoll: 0); IPv6 targets only')
    .option('--dscp <NAME|N>', 'IPv4 DSCP instead of --tos: EF, AF11-AF43, CS0-CS7, LE, VA, BE or 0-63/0x3f (ECN bits 0)')
    .option('--df', "set IPv4 Don't Fragment (netpoll leaves it clear)")
    .option('--ip-id <N>', `fixed IPv4 ID, 0-65535 or 0x0000-0xffff (default: a counter from 1, +1 per ${unit}, as netpoll)`)
    .option('--vlan <ID[:PRIO]>', '802.1Q tag: VLAN ID 0-4095 and optional priority 0-7')
    .option('--bad-ip-checksum', 'NIC validation: write a wrong IPv4 header checksum')
    .option('--bad-udp-checksum', 'NIC validation: write a wrong UDP checksum (a Linux peer drops it: UDP InCsumErrors)')
    .option('--no-udp-checksum', 'send UDP checksum 0 ("none", legal over IPv4)');
}

/** `jsonHelp`: what --json prints, for a command whose output is more than one object. */
export function addFrameOptions(cmd: Command, jsonHelp = 'print one JSON object with what was done'): Command {
  return addFrameProfileOptions(cmd)
    .option('--size <N>', 'pad the payload with zeros to make N-byte frames (60 to MTU+14, without FCS)')
    .option('-w, --write <FILE.pcap>', 'write the frames to a classic pcap file instead of sending (no root needed with --dst-mac/--src-mac/--from)')
    .option('--json', jsonHelp);
}

export interface IntArgOptions {
  /**
   * Also accept 0x hex. For fields that are a byte or a mask of bits (TOS, DSCP, IP ID), which our users write in hex
   * as ping -Q, iproute2, tc and pktgen print them; not for counts, times, sizes or TTL, which are quantities.
   */
  hex?: boolean;
  /** Said after the range: what narrows it later, or its unit. */
  note?: string;
}

/** An integer flag in [lo, hi], or a UsageError naming the value and the range (in hex too when hex is accepted). */
export function intArg(v: string | undefined, what: string, lo: number, hi: number, o: IntArgOptions = {}): number | undefined {
  if (v === undefined) return undefined;
  const t = String(v).trim();
  const n = /^-?\d+$/.test(t) ? Number(t) : o.hex && /^0x[0-9a-f]+$/i.test(t) ? parseInt(t.slice(2), 16) : NaN;
  if (!(Number.isSafeInteger(n) && n >= lo && n <= hi)) {
    const range = o.hex ? `${lo}-${hi} or ${hex(lo, hi)}-${hex(hi, hi)}` : `${lo}-${hi}`;
    throw new UsageError(`bad ${what} '${v}': expected an integer ${range}${o.note ? ` (${o.note})` : ''}`);
  }
  return n;
}

function hex(n: number, widest: number): string {
  return '0x' + n.toString(16).padStart(widest.toString(16).length, '0');
}

/**
 * Counts of datagrams/messages (send -c, netconsole --count): up to 2^31 - 1, the largest a C int (and every pktgen
 * or tool count our users compare with) holds.
 */
export const COUNT_MAX = 2 ** 31 - 1;

export function countArg(v: string | undefined, what = '--count'): number | undefined {
  return intArg(v, what, 1, COUNT_MAX);
}

/**
 * "N" or "LO-HI" within [lo, hi] (values parsed and printed by `parse`/`format`: numbers, or addresses). A reversed
 * range is refused naming the range given and its right order; a value outside names the bounds as the user writes them.
 */
export function rangeArg(s: string, what: string, lo: number, hi: number,
  parse: (x: string) => number = (x) => intArg(x, what, lo, hi)!, format: (n: number) => string = String): [number, number] {
  const parts = String(s).trim().split('-');
  const bounds = `${format(lo)}-${format(hi)}`;
  if (parts.length > 2 || parts.some((p) => p.trim() === '')) throw new UsageError(`bad ${what} '${s}': expected N or LO-HI with values ${bounds}`);
  let a: number, b: number;
  try {
    a = parse(parts[0].trim());
    b = parts.length === 2 ? parse(parts[1].trim()) : a;
  } catch {
    throw new UsageError(`bad ${what} '${s}': expected N or LO-HI with values ${bounds}`);
  }
  for (const x of [a, b]) {
    if (!Number.isInteger(x) || x < lo || x > hi) throw new UsageError(`bad ${what} '${s}': ${format(x)} is outside ${bounds}`);
  }
  if (a > b) throw new UsageError(`bad ${what} '${s}': the range runs backwards (${format(a)} > ${format(b)}); write it low-high: ${format(b)}-${format(a)}`);
  return [a, b];
}

/**
 * DSCP code points by name (RFC 2474 class selectors, RFC 2597 assured forwarding AFxy = 8x + 2y, RFC 3246 EF,
 * RFC 5865 VOICE-ADMIT, RFC 8622 LE), the names iptables' DSCP target and tc use.
 */
export function dscpByName(name: string): number | undefined {
  const t = name.trim().toUpperCase();
  let m: RegExpExecArray | null;
  if ((m = /^CS([0-7])$/.exec(t))) return 8 * Number(m[1]);
  if ((m = /^AF([1-4])([1-3])$/.exec(t))) return 8 * Number(m[1]) + 2 * Number(m[2]);
  return ({ BE: 0, DF: 0, EF: 46, VA: 44, 'VOICE-ADMIT': 44, LE: 1 } as Record<string, number>)[t];
}

/** --dscp NAME|N → the TOS byte (DSCP in its upper six bits, ECN bits 0). */
export function parseDscpArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const named = dscpByName(v);
  if (named !== undefined) return named << 2;
  if (!/^\s*(\d+|0x[0-9a-f]+)\s*$/i.test(v)) {
    throw new UsageError(`bad --dscp '${v}': expected a name (EF, AF11-AF43, CS0-CS7, LE, VA, BE) or a number 0-63 or 0x00-0x3f`);
  }
  return intArg(v, '--dscp', 0, 63, { hex: true })! << 2;
}

export function parseVlanArg(v: string | undefined): { vid: number; pcp: number } | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(v.trim());
  if (!m) throw new UsageError(`bad --vlan '${v}': expected ID[:PRIO] like 100 or 100:5`);
  return { vid: intArg(m[1], '--vlan ID', 0, 4095)!, pcp: intArg(m[2] ?? '0', '--vlan priority', 0, 7)! };
}

/** Flags → SenderOptions (everything but the destination), validating each value with a message that names it. */
/**
 * --size N: here only that it is a number; its range, 60 to MTU+14 (+4 tagged), needs the link's MTU and is checked
 * by the sender before anything is sent (tx/sender.ts checkFrameSize), in those terms — not as 1-65535.
 */
function frameSizeArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = String(v).trim();
  if (!/^\d{1,9}$/.test(t)) throw new UsageError(`bad --size '${v}': expected a frame size in bytes without FCS, 60 to MTU+14`);
  return Number(t);
}

/** --gateway: an IPv4 address stays the u32 IPv4 code takes; an IPv6 one is endpoint.ts' { family: 6, ip6 }. */
function gatewayArg(v: string): number | IpAddress {
  const a = parseIpAddress(v, '--gateway');
  return a.family === 4 ? a.ip : a;
}

export function senderOptionsFromFlags(f: FrameFlags): Omit<SenderOptions, 'to'> {
  if (f.badUdpChecksum && f.udpChecksum === false) {
    throw new UsageError('--bad-udp-checksum and --no-udp-checksum contradict each other: choose one');
  }
  if (f.tos !== undefined && f.dscp !== undefined) {
    throw new UsageError(`--tos ${f.tos} and --dscp ${f.dscp} both set the TOS byte: choose one (--dscp N is --tos N*4)`);
  }
  return {
    iface: f.iface,
    from: f.from !== undefined ? parseSourceAny(f.from, '--from') : undefined,
    gateway: f.gateway !== undefined ? gatewayArg(f.gateway) : undefined,
    flowLabel: intArg(f.flowLabel, '--flow-label', 0, 0xfffff, { hex: true }),
    dstMac: f.dstMac !== undefined ? parseMac(f.dstMac, '--dst-mac') : undefined,
    srcMac: f.srcMac !== undefined ? parseMac(f.srcMac, '--src-mac') : undefined,
    ttl: intArg(f.ttl, '--ttl', 0, 255),
    tos: f.dscp !== undefined ? parseDscpArg(f.dscp) : intArg(f.tos, '--tos', 0, 255, { hex: true }),
    df: !!f.df,
    ipId: f.ipId !== undefined ? intArg(f.ipId, '--ip-id', 0, 65535, { hex: true }) : 'counter',
    vlan: parseVlanArg(f.vlan),
    frameSize: frameSizeArg(f.size),
    ipChecksum: f.badIpChecksum ? 'bad' : 'good',
    udpChecksum: f.badUdpChecksum ? 'bad' : f.udpChecksum === false ? 'none' : 'good',
    arpRetries: intArg(f.retries, '--retries', 1, 100),
    arpTimeoutMs: intArg(f.timeout, '--timeout', 1, 60000),
    writePcap: f.write,
  };
}

/**
 * One convention for a run ended by SIGINT or SIGTERM, in every command (README, "Exit codes"): the command stops
 * what it is doing, prints its summary (with `"interrupted":"SIGINT"` in --json), then exits
 *  - 0 when its job is to run until stopped (collect, netdump-server, sink with no --count/--duration/--idle,
 *    netconsole --follow/--kmsg, blast with neither --count nor --duration): being stopped is how it ends, as for
 *    tcpdump, and a service manager's stop is not a failure;
 *  - 128 + the signal number (130 SIGINT, 143 SIGTERM) when a job with an end of its own (a count, a duration, a file,
 *    a dump, stdin) was cut short: a script can tell a finished run from an interrupted one, as the shell does.
 */
export const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

export type StopSignal = keyof typeof SIGNAL_EXIT;

export function interruptedExitCode(sig: StopSignal, jobHasEnd: boolean): number {
  return jobHasEnd ? SIGNAL_EXIT[sig] : 0;
}

/**
 * Calls `handler` on the first SIGINT or SIGTERM (a second one of either kind is the user insisting: exit at once with
 * 128+signal). Returns the function that removes both listeners.
 */
export function onStopSignal(handler: (sig: StopSignal) => void): () => void {
  let seen = false;
  const listen = (sig: StopSignal) => () => {
    if (seen) process.exit(SIGNAL_EXIT[sig]);
    seen = true;
    handler(sig);
  };
  const onInt = listen('SIGINT');
  const onTerm = listen('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return () => {
    process.removeListener('SIGINT', onInt);
    process.removeListener('SIGTERM', onTerm);
  };
}

/**
 * One event line: in --json a JSON object on stdout (one per line, the run's summary last), else one human line on
 * stderr, prefixed with the command, so that stdout keeps only the summary for scripts that read it.
 */
export type EventWriter = (e: Record<string, unknown>, human: string) => void;

export function eventWriter(command: string, json: boolean | undefined): EventWriter {
  return (e, human) => {
    if (json) process.stdout.write(JSON.stringify(e) + '\n');
    else process.stderr.write(`rawpoll ${command}: ${human}\n`);
  };
}

/**
 * The link-state policy's report (README, "When the link goes down"): one event when the link goes down, one when it
 * is back with how long it was down; `onGone` is told when the interface disappears (the command then prints its
 * summary and exits 1 with "interface IF disappeared"). Returns the function that stops reporting.
 */
export function reportLinkEvents(watch: LinkWatch, ev: EventWriter, onGone?: () => void): () => void {
  const down = (e: LinkDownEvent) =>
    ev({ event: 'link-down', iface: e.iface, at: new Date(e.at).toISOString() }, `link ${e.iface} down; waiting for it to come back`);
  const up = (e: LinkUpEvent) =>
    ev({ event: 'link-up', iface: e.iface, at: new Date(e.at).toISOString(), downMs: e.downMs },
      `link ${e.iface} up again after ${(e.downMs / 1000).toFixed(2)} s down`);
  const gone = (e: LinkDownEvent) => {
    ev({ event: 'link-gone', iface: e.iface, at: new Date(e.at).toISOString() }, `interface ${e.iface} disappeared`);
    onGone?.();
  };
  watch.on('down', down);
  watch.on('up', up);
  watch.on('gone', gone);
  return () => {
    watch.removeListener('down', down);
    watch.removeListener('up', up);
    watch.removeListener('gone', gone);
  };
}

/** `-i/--iface IF` for a receiver on ordinary UDP sockets: the links whose outages it reports (repeatable). */
export function addWatchOption(cmd: Command): Command {
  return cmd.option('-i, --iface <IF>', 'report outages of this link (repeatable); if it is deleted the run ends: summary, exit 1. ' +
    'Default: every link with an address (--bind\'s if given) but loopback, whose deletion is only reported', (v: string, acc: string[]) => [...acc, v], []);
}

/**
 * A link to send or ask on must be up and have a carrier: a RuntimeError (exit 1) naming it, the same words as the
 * sender's (tx/sender.ts), checked before anything that would only be a symptom ("no IPv4 address").
 */
export function requireLinkUsable(iface: IfaceInfo): void {
  if (!iface.up) throw new RuntimeError(`interface ${iface.name} is down; bring it up with: ip link set ${iface.name} up`);
  if (linkStatus(iface.name).status === 'down') {
    throw new RuntimeError(`interface ${iface.name} has no carrier (cable, switch port or veth peer down); nothing can be sent on it now`);
  }
}

/**
 * A path named on the command line, in the exit-code table's terms (README, "Exit codes"): one that is not there or
 * is the wrong kind (ENOENT, ENOTDIR, a directory for a file, a file for a directory) is a wrong value — UsageError,
 * exit 2; one that is there but refused (EACCES, EPERM, EROFS, ENOSPC, EIO…) is the world saying no — RuntimeError, 1.
 */
export function pathError(e: unknown, what: string, path: string): UsageError | RuntimeError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new UsageError(`bad ${what} '${path}': no such file or directory`);
  if (code === 'ENOTDIR') return new UsageError(`bad ${what} '${path}': a part of the path is not a directory`);
  if (code === 'ENAMETOOLONG' || code === 'ELOOP') return new UsageError(`bad ${what} '${path}': ${code}`);
  return new RuntimeError(`cannot use ${what} '${path}': ${code ?? (e as Error)?.message ?? String(e)}`);
}

/**
 * An input file (--log, --file, --follow …): checked before anything is sent, ARP included. "-" is standard input;
 * a FIFO or a device is read like a file (as tcpdump -r reads one); a directory is refused.
 */
export function checkInputFile(path: string, what: string): void {
  if (path === '-') return;
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`bad ${what} '${path}': a directory, not a file`);
    accessSync(path, fsc.R_OK);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw pathError(e, what, path);
  }
}

/**
 * A file rawpoll will create or rewrite (a state file): its directory must already be there — a typo in it is bad
 * usage, not a tree of directories to create — and the path must not be a directory.
 */
export function checkOutputFile(path: string, what: string): void {
  const dir = dirname(resolvePath(path));
  try {
    if (!statSync(dir).isDirectory()) throw new UsageError(`bad ${what} '${path}': ${dir} is not a directory`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`bad ${what} '${path}': no directory ${dir} (rawpoll does not create it)`);
    throw pathError(e, what, path);
  }
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`bad ${what} '${path}': a directory, not a file`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw pathError(e, what, path);
  }
}

/** Creates a file in `dir` and removes it: null when that works, else the error's code. */
function probeWritable(dir: string): string | null {
  const probe = joinPath(dir, `.rawpoll-probe-${process.pid}`);
  try {
    closeSync(openSync(probe, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o600));
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
  unlinkSync(probe);
  return null;
}

/**
 * A receiver's --dir, checked at start-up rather than at the first dump (which would fail after the sender was told
 * "listening"): it must be a directory we can create files in, or, with `create` (collect makes it with its parents),
 * a missing one whose nearest existing ancestor is. Not there without `create`, or a file in the way: bad usage (2).
 * Writability is tried, not asked: creating a file is the one test that answers for permissions, read-only mounts,
 * immutable directories, LSMs and inode quotas alike (root passes access(2) regardless); the probe is removed,
 * nothing is left behind. Not writable: RuntimeError (1).
 */
export function checkWritableDir(dir: string, what: string, o: { create?: boolean } = {}): void {
  let target = resolvePath(dir);
  for (;;) {
    let st;
    try {
      st = statSync(target);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && o.create && dirname(target) !== target) {
        target = dirname(target);
        continue;
      }
      if (code === 'ENOENT') throw new UsageError(`bad ${what} '${dir}': no such directory (create it first)`);
      throw pathError(e, what, dir);
    }
    if (!st.isDirectory()) {
      throw new UsageError(target === resolvePath(dir) ? `bad ${what} '${dir}': a file, not a directory`
        : `bad ${what} '${dir}': ${target} is not a directory`);
    }
    break;
  }
  const refused = probeWritable(target);
  if (refused !== null) {
    const where = target === resolvePath(dir) ? `${what} ${dir} is not writable` : `cannot create ${what} ${dir}: ${target} is not writable`;
    throw new RuntimeError(`${where} (${refused}); nothing was started`);
  }
}

/** -i names must exist: checked before a receiver binds anything, so bad usage leaves nothing open. */
export function checkWatchedLinks(named: string[]): void {
  for (const i of named) {
    if (linkStatus(i).status === 'gone') throw new UsageError(`no interface '${i}' here (-i names a link whose outages to report)`);
  }
}

/**
 * How a receiver on UDP sockets (collect, netdump-server) runs until it is stopped, under the link-state policy: its
 * sockets keep listening through an outage, which is reported. Links named with -i end the run when deleted
 * (`gone`); by default every link with an address (the --bind address, if given) is watched and a deletion is only
 * reported. Resolves with the stop signal, or the interface that disappeared.
 */
export async function untilStopped(named: string[], bind: string | undefined, ev: EventWriter): Promise<{ sig: StopSignal | null; gone: string | null }> {
  checkWatchedLinks(named);
  const names = named.length ? named : Object.entries(networkInterfaces())
    .filter(([, addrs]) => (addrs ?? []).some((a) => !a.internal && (bind === undefined || a.address === bind)))
    .map(([name]) => name)
    .sort();
  const watches: LinkWatch[] = [];
  let unlisten = () => {};
  const r = await new Promise<{ sig: StopSignal | null; gone: string | null }>((resolve) => {
    unlisten = onStopSignal((sig) => resolve({ sig, gone: null }));
    for (const i of names) {
      const w = new LinkWatch(i);
      watches.push(w);
      reportLinkEvents(w, ev, () => (named.length ? resolve({ sig: null, gone: i }) : w.close()));
    }
  });
  if (r.gone) unlisten(); // after a signal the listeners stay: a second one exits at once
  for (const w of watches) w.close();
  return r;
}

/**
 * `-Z, --relinquish-privileges USER`, as tcpdump's: `when` says at which point the command gives up root. The
 * account is resolved as the command line is parsed, so an unknown user is bad usage (exit 2) before anything is
 * opened or sent; `conflicts` names an option -Z cannot go with.
 */
export function addDropOption(cmd: Command, when: string, o: { conflicts?: string } = {}): Command {
  const opt = new Option('-Z, --relinquish-privileges <USER>', `${when}, become USER and its primary group, giving up root and every ` +
    'capability (as tcpdump -Z; needs root; USER from /etc/passwd or NSS)').argParser((v: string) => resolveDropUser(v));
  if (o.conflicts) opt.conflicts(o.conflicts);
  return cmd.addOption(opt);
}

/**
 * The drop itself (host/privdrop.ts), called by each command at the point addDropOption's `when` names: its sockets
 * and files open, nothing sent yet. A receiver names what it writes after the drop: `own`, directories it made at
 * start as root (given to USER if root still owns them: never taken from anyone else), and `writable`, directories
 * USER must create files in — tried as USER right after the drop, so a receiver that could not store anything fails
 * now (exit 1), not at its first dump. If anything fails, `release` closes what was opened before the error is thrown.
 */
export async function relinquishPrivileges(a: Account | undefined, release?: () => unknown,
  o: { own?: string[]; writable?: string[] } = {}): Promise<void> {
  if (!a) return;
  try {
    for (const d of o.own ?? []) {
      try {
        if (statSync(d).uid === 0) chownSync(d, a.uid, a.gid);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new RuntimeError(`-Z ${a.name}: cannot give ${d} to ${a.name}: ${(e as Error).message}`);
      }
    }
    dropPrivileges(a);
    for (const d of o.writable ?? []) {
      const refused = probeWritable(d);
      if (refused !== null) {
        throw new RuntimeError(`-Z ${a.name}: ${a.name} cannot create files in ${d} (${refused}); give it the directory (chown ${a.name} ${d}) or leave -Z out`);
      }
    }
  } catch (e) {
    await release?.();
    throw e;
  }
}

/**
 * What a sender opens or writes after -Z has dropped root, checked before anything is opened: `-w FILE` (a regular
 * file is written beside its name as root and renamed into place at the end, which USER may not be allowed to do:
 * refused; `-w -`, a FIFO or a device is opened before the drop and fine), and a `--follow` file, which is opened
 * again as USER after a rotation (USER must be able to read it and search its directory).
 */
export function checkDropFiles(a: Account | undefined, o: { write?: string; follow?: string }): void {
  if (!a) return;
  if (o.write !== undefined && o.write !== '-') {
    let special = false;
    try {
      const st = statSync(o.write);
      special = !st.isFile() && !st.isDirectory();
    } catch { /* a new file */ }
    if (!special) {
      throw new UsageError(`-Z ${a.name} and -w ${o.write}: a pcap file is renamed into place at the end, after root is given up; ` +
        `write to standard output instead (-w - > ${o.write}: the shell opens the file) or to a FIFO`);
    }
  }
  if (o.follow !== undefined) {
    const dir = dirname(resolvePath(o.follow));
    let ok = true;
    try {
      ok = modeAllows(a, dir, 1);
      try {
        ok = ok && modeAllows(a, o.follow, 4);
      } catch { /* not there yet: waited for, as tail -F */ }
    } catch { /* the directory is not there: --follow's own check says so */ }
    if (!ok) {
      throw new RuntimeError(`-Z ${a.name} and --follow ${o.follow}: ${a.name} may not read it (or search ${dir}), and it is opened again ` +
        `as ${a.name} when it is rotated; make it readable to ${a.name}, or leave -Z out`);
    }
  }
}
