/**
 * Receive engines off the JavaScript thread (native/src/rx.cc): a UDP socket read with recvmmsg, or a libpcap capture,
 * each on a thread of its own that hands JavaScript batches of records (typed-array columns), timed by the kernel.
 *
 *   const e = RxEngine.socket({ port: 9, mode: 'pktgen', timestamp: 'kernel' }, (b) => account(b));
 *   …; await e.stop();   // what the thread still held has been delivered when this resolves
 *
 * Own loss: when JavaScript falls behind, the thread waits, the kernel's buffer fills and the kernel drops; those
 * drops are `stats().ownDrops` (the socket's drop counter, or the capture's ring drops from pcap_stats), the figure
 * a report sets apart from what the network lost.
 */
import { LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { loadAddon } from '../link/addon.js';
import { formatIpv4 } from '../wire/addr.js';
import type { PktgenBatch } from './batch.js';

/** Which clock times each datagram: the kernel's receive stamp, the NIC's, or the receive thread's read. */
export type TimestampSource = 'kernel' | 'hw' | 'user';
export const TIMESTAMP_SOURCES: readonly TimestampSource[] = ['kernel', 'hw', 'user'];

/** What a socket engine listens to: IPv4 only, or IPv6 and IPv4 on one dual-stack socket. */
export type RxFamily = 'ipv4' | 'dual';

export interface RxOpenParams {
  kind: 'socket' | 'capture';
  mode: 'pktgen' | 'payload';
  /** UDP destination port (socket: bound, 0 for a free one; capture: the frames counted). */
  port: number;
  timestamp: TimestampSource;
  /** Socket: the local address to bind (u32; 0 = any). */
  bind?: number;
  /**
   * Socket: 'ipv4' (default) an AF_INET socket; 'dual' an AF_INET6 one with IPV6_V6ONLY off, receiving IPv6 and
   * IPv4 (v4-mapped, recorded as af 4). A kernel without IPv6 gets the IPv4 socket (handle.family, familyWarning).
   */
  family?: RxFamily;
  /** Socket, family 'dual': the local IPv6 address to bind (text, e.g. '2001:db8::2'; default '::'). */
  bind6?: string;
  /** Socket: receive buffer to ask for (SO_RCVBUFFORCE when privileged, else SO_RCVBUF up to rmem_max). */
  rcvbuf?: number;
  /** Capture: the interface; socket: the interface to bind to (SO_BINDTODEVICE; needed for hardware timestamps). */
  iface?: string;
  /** Capture: BPF filter. */
  filter?: string;
  /** Capture: ring bytes (pcap_set_buffer_size). */
  bufferSize?: number;
  /** Capture: bytes kept of each frame (the pktgen header ends 66-70 bytes in; payload mode needs the datagram). */
  snaplen?: number;
  /** Records per hand-over (default 4096), and the longest a record waits for one (ms, default 5). */
  batchRecords?: number;
  flushMs?: number;
  /** Batches that may wait for JavaScript before the thread waits too (default 16). */
  queue?: number;
  /** Payload mode: bytes per hand-over (at least 8 MiB). */
  payloadBytes?: number;
}

export interface RxEngineStats {
  /** UDP datagrams the thread read (pktgen or not). */
  datagrams: number;
  /** The kernel's drops for this engine: socket buffer overflows, or frames the capture ring had no room for. */
  ownDrops: number;
  /** Capture: frames the interface dropped (pcap_stats ps_ifdrop), and frames that passed the filter (ps_recv). */
  ifDrops: number;
  captured: number;
  /** Payload mode: datagrams longer than 64 KiB - 1, cut. */
  truncated: number;
  /** Datagrams without the timestamp asked for (timed by the thread's read instead). */
  noTimestamp: number;
  batches: number;
  /** Hand-overs that waited for JavaScript (it fell behind; the kernel buffer absorbed the rest). */
  queueWaits: number;
  /** Capture: time the link was down, ms. */
  linkDownMs: number;
  /**
   * Capture: IPv6 fragments that passed the filter (not reassembled: skipped, as later IPv4 fragments are). Always
   * there in an engine's stats; optional for reports built by hand.
   */
  fragments?: number;
}

export interface RxEngineHandle {
  /** The port listened on (the kernel's choice when 0 was asked). */
  readonly port: number;
  /** The clock in words, e.g. "kernel (CLOCK_REALTIME, SO_TIMESTAMPNS: …)". */
  readonly clock: string;
  /** The clock used: 'hw' asked of an interface without it falls back to 'kernel' (and `warning` says so). */
  readonly timestamp: TimestampSource;
  readonly warning: string | null;
  /** Socket: the receive buffer the kernel granted (bytes, as SO_RCVBUF reports it: twice what was asked) and whether
   * SO_RCVBUFFORCE was allowed (else net.core.rmem_max capped it). */
  readonly rcvbuf: number | null;
  readonly rcvbufForced: boolean;
  /** Socket: what it listens to ('dual' asked of a kernel without IPv6 is 'ipv4', and familyWarning says so); capture: null. */
  readonly family: RxFamily | null;
  readonly familyWarning: string | null;
  /** rxNs counts from this CLOCK_REALTIME instant (µs since the epoch); 0 for the hardware clock (its first stamp). */
  readonly epochUs: number;
  stats(): RxEngineStats;
  stop(): void;
}

/** A batch of payload mode: datagram i is data[off[i], off[i] + len[i]). */
export interface PayloadBatch {
  n: number;
  /** As PktgenBatch's: af 4 or 6, IPv4 addresses in srcIp/dstIp, IPv6 ones at srcIp6/dstIp6[16 i, 16 i + 16). */
  af: Uint8Array;
  srcIp: Uint32Array;
  dstIp: Uint32Array;
  srcIp6: Uint8Array;
  dstIp6: Uint8Array;
  srcPort: Uint16Array;
  dstPort: Uint16Array;
  len: Uint32Array;
  off: Uint32Array;
  rxNs: Float64Array;
  data: Buffer;
}

/** Why an engine ended by itself; null when stop() ended it. */
export type RxEnd = LinkGoneError | RuntimeError | null;

export class RxEngine<B> {
  readonly handle: RxEngineHandle;
  /** Resolves when the thread has ended and every batch was delivered. */
  readonly ended: Promise<RxEnd>;

  private constructor(p: RxOpenParams, onBatch: (b: B) => void) {
    let resolve!: (e: RxEnd) => void;
    this.ended = new Promise((r) => (resolve = r));
    try {
      this.handle = loadAddon().rxOpen(p, onBatch as (b: unknown) => void, (err) => {
        if (err === null) resolve(null);
        else if (err.code === 'ENODEV') resolve(new LinkGoneError(p.iface ?? '?'));
        else resolve(new RuntimeError(err.message));
      });
    } catch (e) {
      const err = e as Error & { code?: string };
      // The errno name stays on the error: a caller may word it its own way (collect names the protocol).
      throw Object.assign(openError(p, err), { code: err.code, inUse: (err as { inUse?: string }).inUse });
    }
  }

  /** A UDP socket on bind:port read with recvmmsg. */
  static socket(p: Omit<RxOpenParams, 'kind'>, onBatch: (b: PktgenBatch) => void): RxEngine<PktgenBatch>;
  static socket(p: Omit<RxOpenParams, 'kind'> & { mode: 'payload' }, onBatch: (b: PayloadBatch) => void): RxEngine<PayloadBatch>;
  static socket<B>(p: Omit<RxOpenParams, 'kind'>, onBatch: (b: B) => void): RxEngine<B> {
    return new RxEngine<B>({ ...p, kind: 'socket' }, onBatch);
  }

  /** libpcap on p.iface with p.filter (nanosecond timestamps, TPACKET_V3). */
  static capture(p: Omit<RxOpenParams, 'kind'> & { iface: string; filter: string }, onBatch: (b: PktgenBatch) => void): RxEngine<PktgenBatch> {
    return new RxEngine<PktgenBatch>({ ...p, kind: 'capture' }, onBatch);
  }

  stats(): RxEngineStats {
    return this.handle.stats();
  }

  /** Ends the thread; resolves once what it held has been delivered. */
  async stop(): Promise<RxEnd> {
    this.handle.stop();
    return this.ended;
  }
}

/** The open errors in words a user can act on. */
function openError(p: RxOpenParams, e: Error & { code?: string }): Error {
  if (!(e instanceof Error) || e.constructor !== Error) return e; // TypeError/RangeError: our bug, not the user's
  if (p.kind === 'capture') {
    if (e.code === 'EINVAL' && /filter/.test(e.message)) return new UsageError(e.message);
    if (e.code === 'ENODEV') return new UsageError(`no such interface '${p.iface}' (ip link lists them)`);
    if (e.code === 'EPERM') return new RuntimeError(`no permission to capture on ${p.iface}: run as root (or with CAP_NET_RAW)`);
    if (e.code === 'ENETDOWN') return new RuntimeError(`interface ${p.iface} is down; bring it up with: ip link set ${p.iface} up`); // the senders' words
    return new RuntimeError(`cannot capture on ${p.iface}: ${e.message}`);
  }
  const host = p.bind6 !== undefined ? p.bind6 : p.bind ? formatIpv4(p.bind) : p.family === 'dual' ? '::' : '0.0.0.0';
  const where = host.includes(':') ? `[${host}]:${p.port}` : `${host}:${p.port}`;
  // A dual-stack socket is refused its port by an IPv4 socket too: the native side found which half is taken.
  const inUse = (e as { inUse?: string }).inUse === 'ipv4' ? `0.0.0.0:${p.port}` : where;
  if (e.code === 'EADDRINUSE') return new RuntimeError(`UDP ${inUse} is already in use by another socket; stop it, or use --capture -i IF`);
  if (e.code === 'EADDRNOTAVAIL') return new UsageError(`bad --bind '${host}': no interface here has that address`);
  if (e.code === 'EAFNOSUPPORT') return new RuntimeError(`cannot listen on UDP ${where}: this kernel has no IPv6 (booted with ipv6.disable=1?)`);
  if (e.code === 'EACCES') return new RuntimeError(`no permission to bind UDP ${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE`);
  if (e.code === 'ENODEV') return new UsageError(`no such interface '${p.iface}' (ip link lists them)`);
  return new RuntimeError(`cannot listen on UDP ${where}: ${e.message}`);
}
