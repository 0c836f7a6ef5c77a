/**
 * Real network labs for integration tests: network namespaces joined by veth pairs, made with iproute2 and always
 * removed (destroy() is idempotent; call it from after()/finally). Names carry the pid and a counter so parallel
 * test files never collide. Nothing here touches an interface it did not create.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (this file is compiled to dist/test/helpers/). */
export const ROOT = resolve(here, '..', '..', '..');
export const RAWPOLL = resolve(ROOT, 'bin', 'rawpoll.js');

let counter = 0;

export function sh(cmd: string, args: string[], input?: string | Buffer): SpawnSyncReturns<Buffer> {
  return spawnSync(cmd, args, { input, maxBuffer: 256 << 20 });
}

/** Runs a command and throws with its stderr when it fails. */
export function must(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return r.stdout.toString();
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  out: Buffer;
}

export function nsRun(ns: string, args: string[], input?: string | Buffer): RunResult {
  const r = sh('ip', ['netns', 'exec', ns, ...args], input);
  return { code: r.status, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? '', out: r.stdout };
}

/** rawpoll's CLI inside a namespace. */
export function rawpoll(ns: string, args: string[], input?: string | Buffer): RunResult {
  return nsRun(ns, [process.execPath, RAWPOLL, ...args], input);
}

/** rawpoll's CLI run asynchronously (so the test can serve the other side meanwhile). */
export function rawpollAsync(ns: string, args: string[], input?: string | Buffer): Promise<RunResult> {
  return new Promise((res) => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, RAWPOLL, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => err.push(d));
    p.stdin.end(input ?? '');
    p.on('close', (code) => {
      const o = Buffer.concat(out);
      res({ code, stdout: o.toString(), stderr: Buffer.concat(err).toString(), out: o });
    });
  });
}

export class Lab {
  readonly namespaces: string[] = [];
  readonly links: string[] = [];
  private readonly procs: ChildProcess[] = [];
  readonly tag: string;

  constructor(tag = 'rp') {
    if (process.getuid && process.getuid() !== 0) {
      throw new Error('this integration test needs root: it creates network namespaces and veth pairs (run: sudo npm test)');
    }
    this.tag = `${tag}${process.pid % 100000}x${counter++}`;
  }

  ns(short: string): string {
    const name = `${this.tag}${short}`;
    must('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    // No IPv6 autoconf chatter (router solicitations, MLD): the lab carries only what a test sends.
    must('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    return name;
  }

  /** A veth pair between two namespaces; interface names are <= 15 chars. */
  veth(nsA: string, ifA: string, nsB: string, ifB: string): void {
    must('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    this.links.push(`${nsA}/${ifA}`);
    must('ip', ['-n', nsA, 'link', 'set', ifA, 'up']);
    must('ip', ['-n', nsB, 'link', 'set', ifB, 'up']);
  }

  /**
   * A — M — B: three namespaces and two veth pairs, A's ifA to M's ifMA and M's ifMB to B's ifB (no addresses: M is
   * whatever the test makes it, a router or a bridge).
   */
  chain(): { a: string; m: string; b: string; ifA: string; ifMA: string; ifMB: string; ifB: string } {
    const a = this.ns('a');
    const m = this.ns('m');
    const b = this.ns('b');
    const [ifA, ifMA, ifMB, ifB] = ['A', 'mA', 'mB', 'B'].map((s) => `${this.tag}${s}`.slice(-15));
    this.veth(a, ifA, m, ifMA);
    this.veth(m, ifMB, b, ifB);
    return { a, m, b, ifA, ifMA, ifMB, ifB };
  }

  addr(ns: string, ifname: string, cidr: string): void {
    must('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', ifname]);
  }

  /**
   * IPv6 on one interface (ns() turns it off): on, with no router advertisements taken, no DAD (the addresses are
   * usable at once: `nodad`), no automatic link-local address, then each CIDR added ('fd00:1::2/64', 'fe80::2/64').
   */
  addr6(ns: string, ifname: string, ...cidrs: string[]): void {
    must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${ifname}.addr_gen_mode=1`, `net.ipv6.conf.${ifname}.accept_ra=0`,
      `net.ipv6.conf.${ifname}.accept_dad=0`, `net.ipv6.conf.${ifname}.disable_ipv6=0`]);
    for (const c of cidrs) must('ip', ['-n', ns, 'addr', 'add', c, 'dev', ifname, 'nodad']);
  }

  mac(ns: string, ifname: string): string {
    return must('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${ifname}/address`]).trim();
  }

  /** A background process inside a namespace, killed by destroy(). */
  spawn(ns: string, args: string[]): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(p);
    return p;
  }

  destroy(): void {
    for (const p of this.procs) {
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    for (const ns of this.namespaces.splice(0)) {
      // Deleting a namespace removes the veth ends inside it (and so their peers).
      sh('ip', ['netns', 'pids', ns]).stdout?.toString().split('\n').filter(Boolean).forEach((pid) => sh('kill', ['-9', pid]));
      sh('ip', ['netns', 'del', ns]);
    }
  }
}

export interface TwoHostLab {
  lab: Lab;
  /** The sender side (rawpoll runs here) and the receiver side (the kernel's sockets). */
  a: string;
  b: string;
  ifA: string;
  ifB: string;
  ipA: string;
  ipB: string;
  macA: string;
  macB: string;
}

/** Two namespaces, one veth pair, 10.x.y.1/24 and .2/24 (unless noAddrA: then A's link has no IPv4 address). */
export function twoHosts(opts: { noAddrA?: boolean; subnet?: string } = {}): TwoHostLab {
  const lab = new Lab();
  try {
    const a = lab.ns('a');
    const b = lab.ns('b');
    const ifA = `${lab.tag}A`.slice(-15);
    const ifB = `${lab.tag}B`.slice(-15);
    lab.veth(a, ifA, b, ifB);
    const subnet = opts.subnet ?? `10.${100 + (process.pid % 100)}.${counter % 250}`;
    const ipA = `${subnet}.1`;
    const ipB = `${subnet}.2`;
    if (!opts.noAddrA) lab.addr(a, ifA, `${ipA}/24`);
    lab.addr(b, ifB, `${ipB}/24`);
    return { lab, a, b, ifA, ifB, ipA, ipB, macA: lab.mac(a, ifA), macB: lab.mac(b, ifB) };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}

/** A UDP datagram sink in a namespace: socat writes each datagram's payload to stdout. */
export function waitFor(pred: () => boolean, ms: number, stepMs = 20): Promise<boolean> {
  return new Promise((res) => {
    const t0 = Date.now();
    const tick = () => {
      if (pred()) return res(true);
      if (Date.now() - t0 > ms) return res(false);
      setTimeout(tick, stepMs);
    };
    tick();
  });
}

/** A counter from /proc/net/snmp in a namespace, e.g. snmp(ns, 'Udp', 'InCsumErrors'). */
export function snmp(ns: string, proto: string, field: string): number {
  const lines = must('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith(proto + ':'));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[names.indexOf(field)]);
}

export const UDPRECV = resolve(ROOT, 'dist', 'test', 'helpers', 'udprecv.js');

export interface Datagram {
  from: string;
  port: number;
  data: Buffer;
}

/**
 * Starts a kernel UDP socket on `port` in `ns` and resolves once it is bound. `done()` waits for it to exit
 * (after `count` datagrams or `timeoutMs`) and returns what it received. `family`: 4 (the default, 0.0.0.0), 6 ([::]
 * with IPV6_V6ONLY: IPv6 only) or 'dual' ([::] taking IPv4 too, as v4-mapped addresses).
 */
export async function udpReceiver(lab: Lab, ns: string, port: number, count: number, timeoutMs = 5000,
  opts: { family?: 4 | 6 | 'dual' } = {}): Promise<{ done: () => Promise<Datagram[]> }> {
  const family = opts.family ?? 4;
  const p = lab.spawn(ns, [process.execPath, UDPRECV, String(port), String(count), String(timeoutMs), String(family)]);
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  const exited = new Promise<void>((res) => p.on('close', () => res()));
  const ok = await waitFor(() => out.startsWith('ready\n'), 5000);
  if (!ok) throw new Error(`UDP receiver (family ${family}) on ${ns}:${port} did not start`);
  return {
    done: async () => {
      await exited;
      return out.split('\n').slice(1).filter(Boolean).map((l) => {
        const j = JSON.parse(l);
        return { from: j.from, port: j.port, data: Buffer.from(j.hex, 'hex') };
      });
    },
  };
}

/** Resident memory of a process in KiB: now (VmRSS) and its peak so far, the kernel's high-water mark (VmHWM). */
export function rssKiB(pid: number): { rss: number; hwm: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string) => Number((new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st) ?? [])[1]);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

/** rx_packets of an interface inside a namespace. */
export function rxPackets(ns: string, ifname: string): number {
  return Number(must('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${ifname}/statistics/rx_packets`]).trim());
}

/** Takes a link down for `downMs` and brings it back: `ip link set IF down; sleep; ip link set IF up`, as a user would. */
export async function flap(ns: string, ifname: string, downMs: number): Promise<void> {
  must('ip', ['-n', ns, 'link', 'set', ifname, 'down']);
  await new Promise((r) => setTimeout(r, downMs));
  must('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
}

/** Waits for a child to exit; rejects naming the signal if it died by one (an abort, a crash) it was not sent. */
export function exitOf(p: ChildProcess, timeoutMs = 20000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((res, rej) => {
    const done = () => res({ code: p.exitCode, signal: p.signalCode });
    if (p.exitCode !== null || p.signalCode !== null) return done();
    const t = setTimeout(() => rej(new Error(`process ${p.pid} still running after ${timeoutMs} ms`)), timeoutMs);
    p.once('exit', () => {
      clearTimeout(t);
      done();
    });
  });
}

/**
 * What most integration files need: a scratch directory and two-host labs, all removed in node:test's after() even
 * when a test fails. `hosts()` makes a fresh lab per call.
 */
export function labsForThisFile(tmpPrefix: string): { tmp: string; hosts: (opts?: Parameters<typeof twoHosts>[0]) => TwoHostLab } {
  const labs: Lab[] = [];
  const tmp = mkdtempSync(join(tmpdir(), tmpPrefix));
  after(() => {
    for (const l of labs) l.destroy();
    rmSync(tmp, { recursive: true, force: true });
  });
  return {
    tmp,
    hosts: (opts) => {
      const h = twoHosts(opts);
      labs.push(h.lab);
      return h;
    },
  };
}

/** The drop counter of the root qdisc on DEV in namespace NS (`tc -s qdisc show`: tbf's own count of what it dropped). */
export function qdiscDrops(ns: string, dev: string): number {
  const s = must('tc', ['-n', ns, '-s', 'qdisc', 'show', 'dev', dev]);
  const d = /dropped (\d+)/.exec(s);
  if (!d) throw new Error(`no drop counter in: ${s}`);
  return Number(d[1]);
}

export interface Tcpdump {
  /** tcpdump's stderr so far (its summary, "N packets dropped by kernel", once it has exited). */
  err: () => string;
  /** Waits `settleMs` (a frame in flight reaches the capture), ends tcpdump with SIGINT, waits for it to exit: the file. */
  stop: (settleMs?: number) => Promise<string>;
}

/**
 * tcpdump -w FILE on IF in NS, resolved once it listens. Always `--immediate-mode -U`: without immediate mode TPACKET_V3
 * hands frames over a block at a time (up to a second late), and a frame still in libpcap's ring block at SIGINT is
 * counted "received by filter" but never written. `filter` is a pcap filter ('' for every frame); `extra` more options
 * (e.g. ['-B', '65536']).
 */
export async function startTcpdump(lab: Lab, ns: string, ifname: string, file: string, filter = '', extra: string[] = []): Promise<Tcpdump> {
  const p = lab.spawn(ns, ['tcpdump', '-n', '-i', ifname, '--immediate-mode', '-U', ...extra, '-w', file, ...(filter ? [filter] : [])]);
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d));
  const closed = new Promise<void>((res) => p.on('close', () => res()));
  if (!(await waitFor(() => /listening on/.test(err) || p.exitCode !== null, 10000)) || p.exitCode !== null) {
    throw new Error(`tcpdump on ${ns}/${ifname} did not start: ${err}`);
  }
  return {
    err: () => err,
    stop: async (settleMs = 300) => {
      await new Promise((r) => setTimeout(r, settleMs));
      p.kill('SIGINT');
      await closed;
      return file;
    },
  };
}

export interface RunningRawpoll {
  proc: ChildProcess;
  /** stdout and stderr so far. */
  out: () => string;
  err: () => string;
  /** The stdout lines that are JSON objects (`--json` events), parsed. */
  events: () => Record<string, unknown>[];
  /** true once `ready` matches stdout + stderr; false if rawpoll exited first (or 10 s passed). */
  up: Promise<boolean>;
  /** Its exit code, once it has exited and its stdout and stderr were read to the end. */
  exited: Promise<number | null>;
  /** SIGINT, then its exit code. */
  stop: () => Promise<number | null>;
}

/** A long-running `rawpoll ARGS` (a receiver) in the background in NS, killed by lab.destroy() if still running. */
export function startRawpoll(lab: Lab, ns: string, args: string[], ready: RegExp): RunningRawpoll {
  const p = lab.spawn(ns, [process.execPath, RAWPOLL, ...args]);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => p.on('close', (c) => r(c)));
  return {
    proc: p,
    out: () => out,
    err: () => err,
    events: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
    up: waitFor(() => ready.test(out + err) || p.exitCode !== null, 10000).then(() => p.exitCode === null),
    exited,
    stop: async () => { p.kill('SIGINT'); return exited; },
  };
}

export interface V6Lab extends TwoHostLab {
  /** fdXX:N:: — A is ${net}1, B is ${net}2 (a /64 of this process's own); fe80::1 and fe80::2 link-local. */
  net: string;
}

let v6nets = 1;
/** IPv6 on a two-host lab's veth pair (Lab.addr6: no DAD, no autoconf): global and link-local addresses on both ends. */
export function withIpv6(h: TwoHostLab): V6Lab {
  const net = `fd${(process.pid % 250).toString(16).padStart(2, '0')}:${(v6nets++).toString(16)}::`;
  h.lab.addr6(h.a, h.ifA, `${net}1/64`, 'fe80::1/64');
  h.lab.addr6(h.b, h.ifB, `${net}2/64`, 'fe80::2/64');
  return { ...h, net };
}
