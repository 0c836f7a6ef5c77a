/**
 * rawpoll's native addon (native/, N-API): our libpcap binding and the AF_PACKET batch sender. Every link goes
 * through it, so it is built by `npm run build` (needs libpcap-dev and a C++ compiler) and loaded once here.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RuntimeError } from '../errors.js';
import type { NativeBatchResult, NativeBlastParams, NativeBlastResult, NativeProgress } from './native.js';
import type { RxEngineHandle, RxOpenParams } from '../rx/engine.js';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));

export interface PcapStats {
  /** Frames the kernel handed the socket (that passed the filter). */
  received: number;
  /** Frames dropped because the capture ring was full: ours, not the network's. */
  dropped: number;
  /** Frames the interface/driver dropped (as the kernel reports it; often 0 on Linux). */
  ifdropped: number;
}

export interface PcapOpenParams {
  snaplen?: number;
  bufferSize?: number;
  promisc?: boolean;
  immediate?: boolean;
  timeoutMs?: number;
  tstampType?: string;
  nanosecond?: boolean;
  filter?: string;
  /** Receive batch: frames are copied here back to back; meta holds [offset, caplen, wirelen, sec, frac] each. */
  data?: Buffer;
  meta?: Uint32Array;
}

export interface PcapBatchResult {
  /** Frames sent, from the first: frames 0..sent-1 went out. */
  sent: number;
  /** Times a frame met a full queue (EAGAIN/ENOBUFS) and waited before its retry. */
  waits: number;
  /** errno name of the failure (ENETDOWN, ENXIO, ...; EAGAIN/ENOBUFS: the queue stayed full 2 s); '' when all went out. */
  code: string;
  /** libpcap's message for the failure; '' when all went out. */
  error: string;
}

export interface PcapHandle {
  readonly linktype: number;
  readonly linktypeName: string;
  readonly nanosecond: boolean;
  readonly snaplen: number;
  readonly fd: number;
  readonly warning: string | null;
  setFilter(expr: string): void;
  /** Bytes sent, or throws an Error whose `code` is the errno name (EAGAIN, ENOBUFS, ENETDOWN, ENXIO, ...). */
  inject(frame: Uint8Array): number;
  /**
   * pcap_inject for frames 0..n-1 (frame i = buf[offsets[i], offsets[i] + lengths[i])) in one call, a full queue
   * waited out per frame as PcapLink.send does (up to 2 s). Never throws for a send error: frames 0..sent-1 went out,
   * and `code` (errno name) / `error` say why frame `sent` did not ('' when all n went out). Throws TypeError /
   * RangeError for bad arguments (a frame outside buf, n beyond offsets or lengths) before sending anything.
   */
  injectBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): PcapBatchResult;
  stats(): PcapStats;
  /** Poll again after onError (the socket stayed bound through the outage; its ring kept what arrived). */
  resume(): void;
  close(): void;
}

export interface LinkStateRaw {
  /** 0: no interface of that name in this network namespace. */
  index: number;
  /** IFF_UP: administratively up. */
  up: boolean;
  /** IFF_RUNNING: operstate up (set by the kernel's linkwatch, up to ~1 s after the carrier). */
  running: boolean;
  /** Carrier now (ETHTOOL_GLINK; IFF_RUNNING where the driver cannot say). */
  carrier: boolean;
}

/**
 * What planWriter() copies in: a blast's templates and their order, as blast() takes them (both go through one
 * LoadFrames in C), and its patch plan (src/tx/plan.ts encodePlan).
 */
export type PlanWriterParams = Pick<NativeBlastParams, 'frames' | 'offsets' | 'lengths' | 'flows' | 'order' | 'nFlows' | 'ipId' | 'seqStart'> & {
  plan: Int32Array;
};

/** The patch plan walked in C (native/src/planwriter.cc) for the pcap engine: a group of frames per call. */
export interface NativePlanWriter {
  /**
   * Writes the frames of order positions pos .. pos+m-1 back to back from buf[0] (frame i at offsets[i], lengths[i]
   * bytes), stamped tvSec/tvUsec; the IP ID and seq counters advance. Returns the bytes written. RangeError, and
   * nothing written, when buf is too short.
   */
  fill(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, pos: number, m: number, tvSec: number, tvUsec: number): number;
  /** The frames of order positions pos .. pos+k-1 did not go out: their IP IDs and seqs go to the next frames. */
  rewind(pos: number, k: number): void;
  /** The next IP ID (mod 2^16) and the next seq of each flow. */
  counters(): { ipId: number; seq: number[] };
}

export interface Addon {
  open(ifname: string, opts?: { qdiscBypass?: boolean; sndbuf?: number }): { fd: number; ifindex: number; qdiscBypass: boolean };
  close(fd: number): void;
  sendBatch(fd: number, buf: Buffer, offsets: Uint32Array, lengths: Uint32Array): NativeBatchResult;
  blast(p: NativeBlastParams, onProgress: (p: NativeProgress) => void, onDone: (err: Error | null, r?: NativeBlastResult) => void): { stop(): void; threads: number };
  pcapOpen(ifname: string, opts: PcapOpenParams, onBatch: (n: number) => void, onError: (msg: string, code: string) => void): PcapHandle;
  pcapTstampTypes(ifname: string): string[];
  linkState(ifname: string): LinkStateRaw;
  pcapLibVersion(): string;
  /** A receive engine on a thread of its own (native/src/rx.cc); throws an Error with the errno name as `code`. */
  rxOpen(p: RxOpenParams, onBatch: (b: unknown) => void, onEnd: (err: { message: string; code: string } | null) => void): RxEngineHandle;
  /** Absent from an addon built before it: the pcap engine then walks the plan in JS. */
  planWriter?(p: PlanWriterParams): NativePlanWriter;
}

/** Where the addon is looked for: $RAWPOLL_NATIVE, then native/build/Release under the package root. */
export function nativeAddonPath(): string {
  if (process.env.RAWPOLL_NATIVE) return process.env.RAWPOLL_NATIVE;
  // src/link (tsx/ts-node) or dist/src/link (compiled): the package root is the first ancestor with native/.
  for (const up of ['../..', '../../..']) {
    const p = resolve(here, up, 'native', 'build', 'Release', 'rawpoll_native.node');
    if (existsSync(p)) return p;
  }
  return resolve(here, '../../..', 'native', 'build', 'Release', 'rawpoll_native.node');
}

let cached: Addon | null = null;
let loadError: string | null = null;

export function tryLoadAddon(): Addon | null {
  if (cached || loadError) return cached;
  if (process.platform !== 'linux') {
    loadError = `rawpoll's links need Linux (AF_PACKET, libpcap's TPACKET_V3); this is ${process.platform}`;
    return null;
  }
  const p = nativeAddonPath();
  if (!existsSync(p)) {
    loadError = `rawpoll's native addon is not built (no ${p}); build it with "npm run build" (needs libpcap-dev, a C++ compiler and node-gyp)`;
    return null;
  }
  try {
    cached = require(p) as Addon;
  } catch (e) {
    loadError = `cannot load rawpoll's native addon ${p}: ${(e as Error).message}; rebuild it with "npm run build:native"`;
  }
  return cached;
}

/** The addon, or a RuntimeError saying how to build it. */
export function loadAddon(): Addon {
  const a = tryLoadAddon();
  if (!a) throw new RuntimeError(loadError!);
  return a;
}

export function addonLoadError(): string | null {
  tryLoadAddon();
  return loadError;
}
