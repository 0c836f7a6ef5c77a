/**
 * A netoops report sent the way Google's netoops patch sent one (drivers/net/netoops.c, v3 layout): the log cut into
 * 1024-byte chunks, newest first (packet_no 0 = the tail), each in one fixed-size UDP datagram from port 2004 to port
 * 2004, the whole set repeated `retransmit` times with no ACKs. What the patch kept in memory — one-shot (silent
 * after the first real oops until re-armed) and, as its reviewers asked, a rate limit — lives in a state file here
 * (tx/oopsstate.ts), because a userland sender runs once per report.
 *
 * `rawpoll oops` is flags and printing over these: readOopsLog, buildOopsReport, rearmOneShot and sendOops.
 */
import { readFileSync } from 'node:fs';
import { RuntimeError } from '../errors.js';
import { readHostInfo, readKmsgSnapshot, type HostInfo } from '../host/hostinfo.js';
import {
  NETOOPS_ARCH_X86, NETOOPS_PORT, NETOOPS_TYPE_OOPS, NETOOPS_TYPE_SOFT, NetoopsEncoder, encodeUserBlob, netoopsTypeName,
} from '../proto/netoops.js';
import { OopsStateFile, decide, recordSent, type RateLimit } from './oopsstate.js';
import { UdpSender, type SenderOptions, type SenderTarget } from './sender.js';

/** The log a report carries, and when it came from /dev/kmsg, how many records it held and how many were lost. */
export interface OopsLog {
  log: Buffer;
  kmsg: { records: number; lost: number } | null;
}

/** The log from a file ('-': standard input) or the kernel's own log as it is now (printk-buffer lines). */
export function readOopsLog(src: { file: string } | { kmsg: true }): OopsLog {
  if ('kmsg' in src) {
    try {
      const k = readKmsgSnapshot();
      return { log: k.log, kmsg: { records: k.records, lost: k.lost } };
    } catch (e) {
      throw new RuntimeError(`cannot read /dev/kmsg: ${(e as Error).message} (needs root or CAP_SYSLOG)`);
    }
  }
  try {
    return { log: readFileSync(src.file === '-' ? 0 : src.file), kmsg: null };
  } catch (e) {
    throw new RuntimeError(`cannot read log ${src.file === '-' ? 'from standard input' : src.file}: ${(e as Error).message}`);
  }
}

/** What the user may set in a report's header; the rest comes from the running host. */
export interface OopsReportOptions {
  soft: boolean;
  /** Header layout: 3 (default) or 2 (the v1 patch: SMBIOS strings in the header). */
  version?: 2 | 3;
  /** Default: seconds since boot & 0xffff, as the patch. */
  dumpId?: number;
  /** Default: the first 32 bits of /proc/sys/kernel/random/boot_id. */
  bootId?: number;
  /** Default: uname -r. */
  kernelVersion?: string;
  /** Defaults: /sys/class/dmi/id/board_name and bios_version. */
  board?: string;
  firmware?: string;
}

/** One report, encoded: its datagrams come from `enc`, the fields are what its header says. */
export interface OopsReport {
  enc: NetoopsEncoder;
  soft: boolean;
  /** 'oops' or 'soft'. */
  type: string;
  version: 2 | 3;
  dumpId: number;
  bootId: number;
  kernelVersion: string;
  board: string | null;
  firmware: string | null;
  logBytes: number;
}

/**
 * The report's header from the running host (kernel release, boot id, CPU identity, SMBIOS strings) with the user's
 * overrides, and `log` as its data. arch is 2 on x86 (CPU identity + zeroed registers: user space has no trap
 * frame); elsewhere 0, with no arch data.
 */
export function buildOopsReport(log: Buffer, o: OopsReportOptions, host: HostInfo = readHostInfo()): OopsReport {
  const board = o.board ?? host.board ?? undefined;
  const firmware = o.firmware ?? host.firmware ?? undefined;
  const version = o.version ?? 3;
  const type = o.soft ? NETOOPS_TYPE_SOFT : NETOOPS_TYPE_OOPS;
  const kernelVersion = o.kernelVersion ?? host.kernelRelease;
  const enc = new NetoopsEncoder({
    version,
    dumpId: o.dumpId ?? host.uptimeSec & 0xffff,
    type,
    bootId: o.bootId ?? host.bootId,
    kernelVersion,
    arch: host.arch,
    x86: host.arch === NETOOPS_ARCH_X86 && host.cpu ? { vendor: host.cpu.vendor, family: host.cpu.family, model: host.cpu.model, stepping: host.cpu.stepping } : undefined,
    userBlob: version === 3 ? encodeUserBlob({ board, firmware }) : undefined,
    biosVersion: firmware,
    boardName: board,
  }, log);
  return {
    enc, soft: o.soft, type: netoopsTypeName(type), version, dumpId: enc.buf.readUInt16LE(2), bootId: enc.buf.readUInt32LE(20),
    kernelVersion, board: board ?? null, firmware: firmware ?? null, logBytes: log.length,
  };
}

/** Arms the one-shot state in `file` again (the next oops-type report goes out). */
export async function rearmOneShot(file: string): Promise<void> {
  const st = await OopsStateFile.lock(file);
  try {
    st.write({ ...st.read(), armed: true, disarmedAt: null });
  } finally {
    st.unlock();
  }
}

export interface OopsSendOptions extends Omit<SenderOptions, 'to' | 'srcPort' | 'payloadLen'> {
  /** IPv4, or IPv6 (rawpoll's extension: netoops itself never had IPv6). */
  to: SenderTarget;
  report: OopsReport;
  /** Times the whole set is sent (the patch: 3). */
  retransmit: number;
  /** Pause between datagrams, µs (the seed spaced packets to spare switch buffers). */
  gapUs: number;
  /**
   * One-shot and rate limit, kept in `file` (locked for the run): a report they hold back is not sent, and one sent
   * in full is recorded there (an interrupted one is not).
   */
  state?: { file: string; oneShot: boolean; rate?: RateLimit };
  /**
   * Called once the link is open and the next hop resolved, before the first datagram: where `rawpoll oops -Z` gives
   * up root. If it throws, the link is closed and nothing is sent.
   */
  onOpen?: () => void | Promise<void>;
  /**
   * Subscribes to what may interrupt the sending (SIGINT/SIGTERM in the CLI); returns the unsubscribe. Called once
   * the state file has let the report go, before the target is resolved: an interrupt during ARP takes effect when
   * ARP is done, and the datagrams sent so far are the summary's.
   */
  interrupt?: (stop: (reason: string) => void) => () => void;
}

/** The state file held the report back: nothing was sent. */
export interface OopsHeldBack {
  sent: false;
  heldBack: true;
  reason: 'disarmed' | 'rate-limited';
  detail: string;
  retryAt: string | null;
}

export interface OopsSent {
  /** Every datagram of every round went out. */
  sent: boolean;
  heldBack: false;
  /** The interrupt's reason when it cut the sending short. */
  interrupted: string | null;
  datagrams: number;
  /** packetCount × retransmit. */
  total: number;
  datagramBytes: number;
  src: string;
  dst: string;
  dstMac: string;
  arpMs: number | null;
  iface: string | null;
  /** The one-shot state was disarmed by this report. */
  disarmed: boolean;
}

/**
 * Sends one report to `to` (from port 2004 unless `from` says otherwise), round after round, the state file
 * permitting. A report held back is not an error (OopsHeldBack); an interrupted one leaves the state file as it was.
 */
export async function sendOops(o: OopsSendOptions): Promise<OopsHeldBack | OopsSent> {
  const { report, state: sf } = o;
  const enc = report.enc;
  const state = sf ? await OopsStateFile.lock(sf.file, 60_000) : null;
  try {
    const dopts = { soft: report.soft, oneShot: !!sf?.oneShot, rate: sf?.rate, now: Date.now() };
    if (state) {
      const d = decide(state.read(), dopts);
      if (!d.send) return { sent: false, heldBack: true, reason: d.reason, detail: d.detail, retryAt: d.retryAt ?? null };
    }
    let interrupted = null as string | null;
    const unlisten = o.interrupt?.((reason) => { interrupted = reason; }) ?? (() => {});
    let sender: UdpSender;
    try {
      sender = await UdpSender.open({ ...o, srcPort: o.from?.port ?? NETOOPS_PORT, payloadLen: enc.buf.length });
    } catch (e) {
      unlisten();
      throw e;
    }
    try {
      await o.onOpen?.();
    } catch (e) {
      sender.abort();
      unlisten();
      throw e;
    }
    const total = enc.packetCount * o.retransmit;
    let datagrams = 0;
    try {
      send: for (let round = 0; round < o.retransmit; round++) {
        for (const k of enc.order()) {
          if (datagrams > 0) await gap(o.gapUs);
          if ((datagrams & 63) === 63) await new Promise((r) => setImmediate(r)); // short gaps spin: let a signal in
          if (interrupted) break send;
          sender.send(enc.datagram(k));
          datagrams++;
        }
      }
      await sender.close();
    } catch (e) {
      sender.abort();
      throw e;
    } finally {
      unlisten();
    }
    const cut = datagrams < total ? interrupted : null;
    if (state && !cut) state.write(recordSent(state.read(), dopts));
    const d = sender.describe();
    return {
      sent: !cut, heldBack: false, interrupted: cut, datagrams, total, datagramBytes: enc.buf.length,
      src: d.src, dst: d.dst, dstMac: d.dstMac,
      arpMs: sender.arpMs === null ? null : Math.round(sender.arpMs * 1000) / 1000,
      iface: sender.iface?.name ?? null, disarmed: !!sf?.oneShot && !report.soft && !cut,
    };
  } finally {
    state?.unlock();
  }
}

/** Spin for short gaps (timers are ms-grained), sleep for long ones. */
async function gap(us: number): Promise<void> {
  if (us <= 0) return;
  if (us >= 2000) {
    await new Promise((r) => setTimeout(r, Math.round(us / 1000)));
    return;
  }
  const end = process.hrtime.bigint() + BigInt(us) * 1000n;
  while (process.hrtime.bigint() < end) { /* spin */ }
}
