import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import {
  NETOOPS_DATA_BYTES, NetoopsRepr, parseNetoops, decodeUserBlob, netoopsTypeName,
} from '../proto/netoops.js';

/**
 * The netoops receiver nobody published: reassembles dumps from UDP datagrams (no I/O on the network here — the caller
 * feeds datagrams from its socket) and writes each dump as `<name>.log` + `<name>.json` in `dir`.
 *
 * - Grouped by (source address, boot_id, dump_id). Retransmitted copies (the sender repeats the whole set 3 times)
 *   are duplicates and dropped; after a dump is written, its late copies are recognised by a per-chunk hash and
 *   dropped too, while a *different* dump that reuses the key (two dumps in the same second) starts a new file.
 * - A dump is written when all packet_count chunks are in, or after `idleMs` without a new chunk (partial), with a
 *   JSON sidecar holding every header field and the list of missing packet_no.
 * - Files are written to a temp name, fsync'ed and renamed: a crash never leaves a half file under a final name.
 *   The .log is renamed before the .json, so a .json always describes a finished .log. A failed write removes its
 *   temp file (a hidden file would keep a full disk full); removeStaleTemps clears those of a killed predecessor.
 * - Write failures go to a DiskWatch: a full disk is reported once per episode, not once per dump.
 * - Garbage never throws: every datagram that is not a plausible netoops datagram is counted by reason.
 *
 * Budgets (anyone can send UDP here; each datagram's effect is bounded in memory and CPU, each excess is counted):
 * - Reassembly: at most `maxOpenDumps` dumps, at most `maxBytesPerDump` bytes each (a datagram announcing more chunks
 *   is dropped as `too_big`), at most `maxTotalBytes` buffered in all. An open dump holds only the chunks that arrived
 *   (a datagram claiming 4096 chunks costs one chunk, not a 4096-entry table).
 * - Who gives way (2Q, O(1) per datagram): a dump with one chunk is on probation; its second chunk makes it
 *   established. Over a cap, the least recently active probation dump goes first, an established one only when no
 *   dump is on probation — a flood of one-datagram fake dumps cannot push out a real dump in progress. A source
 *   address has at most `maxDumpsPerHost` dumps open; its next one makes its own least recently active dump give way
 *   (probation first), whatever other sources do.
 * - An evicted probation dump (one chunk of several) is dropped, counted as `evicted_unconfirmed`, not written: writing
 *   a file pair per fake datagram is what would let a flood amplify itself onto the disk. A real dump losing its first
 *   chunk this way gets it back from the sender's next retransmit round. An evicted established dump is written as
 *   partial (reason `evicted`); a dump idle for idleMs, or open at close, is written as partial whatever its size.
 * - Writing: one writer, complete dumps before partial ones, at most `maxQueuedWrites` dumps queued (the one being
 *   written included) and `maxTotalBytes` of them, a dump costing its log bytes plus its packet table and a fixed
 *   estimate for its header (`QUEUED_WRITE_OVERHEAD`), so zero-filled fakes with empty logs count too. With the queue
 *   full a partial dump is dropped (`backlog`, event `dump-dropped`); a complete one displaces the newest queued
 *   partial (that one counted `backlog`, `dump-dropped`), and is dropped itself only when complete dumps fill the queue.
 *   A queued dump keeps its packet table as 2 bytes per chunk; the sidecar JSON is built when it is written.
 * - Finished dumps leave only a 4-byte fingerprint per chunk behind, at most maxFinished dumps and maxFinishedBytes of
 *   fingerprints (LRU).
 * Limits: a sender that forges ≥ 2 chunks per fake dump from many source addresses reaches the established segment
 * and can still evict a real dump in progress (it is written as partial, and its later chunks start a new file).
 */

export interface OopsEvent {
  event: string;
  host: string;
  [k: string]: unknown;
}

export interface OopsCollectorOptions {
  dir: string;
  onEvent: (e: OopsEvent) => void;
  idleMs?: number;
  maxOpenDumps?: number;
  /** Dumps open at once per source address (its least recently active gives way). */
  maxDumpsPerHost?: number;
  maxBytesPerDump?: number;
  maxTotalBytes?: number;
  /** Dumps waiting to be written or being written (entries; their bytes count against maxTotalBytes). */
  maxQueuedWrites?: number;
  /** Finished dumps remembered to recognise late retransmits (LRU), by count and by fingerprint bytes. */
  maxFinished?: number;
  maxFinishedBytes?: number;
  /** Where write failures go; shared with the netconsole receiver by `collect`. Default: one for `dir`. */
  disk?: DiskWatch;
}

export const OOPS_DEFAULTS = {
  idleMs: 10_000,
  maxOpenDumps: 32,
  maxDumpsPerHost: 4,
  maxBytesPerDump: 4 * 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
  maxQueuedWrites: 64,
  maxFinished: 4096,
  maxFinishedBytes: 4 * 1024 * 1024,
};

export type OopsDropReason =
  | 'truncated' | 'version' | 'offsets' | 'packet_no' | 'too_big' | 'conflict' | 'duplicate' | 'late' | 'backlog'
  | 'evicted_unconfirmed';

/**
 * What a queued write holds besides its log bytes and packet table: the entry, the dump's header snapshot (strings of
 * at most 64-128 bytes), its emptied maps. Measured at about 1.4 KiB of heap and 0.4 KiB outside it per queued dump
 * (Node 20, 20,000 dumps queued); rounded up. It is what makes a zero-filled fake with an empty log cost something.
 */
export const QUEUED_WRITE_OVERHEAD = 2048;

interface OpenDump {
  key: string;
  host: string;
  port: number;
  generation: number;
  // From the first datagram: numbers and strings only, no view into it (the datagram's memory is not kept).
  bootId: number;
  dumpId: number;
  type: number;
  version: number;
  kernel: string;
  header: Record<string, unknown>;
  packetCount: number;
  /** Chunks and their FNV-1a fingerprints by packet_no: memory follows what arrived, not packet_count. */
  chunks: Map<number, Buffer>;
  hashes: Map<number, number>;
  duplicates: number;
  firstSeen: number;
  lastSeen: number;
  /** Two chunks or more: in the established segment, else on probation. */
  established: boolean;
}

/** A host's open dumps in the two segments, each in LRU order (Map insertion order refreshed on activity). */
interface HostDumps {
  probation: Map<string, OpenDump>;
  established: Map<string, OpenDump>;
}

interface FinishedDump {
  packetCount: number;
  /** FNV-1a of each chunk by packet_no, 0 = not received (a real hash of 0 is stored as 1). */
  hashes: Uint32Array;
  generation: number;
  complete: boolean;
}

type FinishReason = 'complete' | 'idle' | 'evicted' | 'shutdown';

interface QueuedWrite {
  d: OpenDump; // chunks and hashes already released
  complete: boolean;
  reason: FinishReason;
  /** Chunks received. */
  chunks: number;
  body: Buffer;
  /** Bytes each packet_no left in `body` after NUL stripping, -1 missing: the sidecar's lists are built from it. */
  lens: Int16Array;
  cost: number;
}

/** FNV-1a over a chunk: cheap fingerprint to tell a late retransmit from a different dump under the same key. */
function fnv1a(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) || 1;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function snapshotHeader(r: NetoopsRepr): Record<string, unknown> {
  const h: Record<string, unknown> = {
    version: r.version,
    dump_id: r.dumpId,
    data_offset: r.dataOffset,
    arch: r.arch,
    arch_offset: r.archOffset,
    type: r.type,
    type_name: netoopsTypeName(r.type),
    packet_count: r.packetCount,
    boot_id: r.bootId,
    boot_id_hex: hex32(r.bootId),
    kernel_version: r.kernelVersion,
  };
  if (r.userBlob) {
    const u = decodeUserBlob(r.userBlob);
    h.user_blob = u.text;
    h.user_fields = u.fields;
  }
  if (r.biosVersion !== undefined) h.bios_version = r.biosVersion;
  if (r.boardName !== undefined) h.motherboard_type = r.boardName;
  if (r.x86) {
    h.x86 = {
      vendor: r.x86.vendor, family: r.x86.family, model: r.x86.model, stepping: r.x86.stepping,
      regs_len: r.x86.regs.length,
      regs_hex: r.x86.regs.some((x) => x !== 0) ? Buffer.from(r.x86.regs).toString('hex') : null,
    };
  }
  return h;
}

/** The least recently active dump of two LRU segments, probation first, skipping `not`. O(1): looks at two heads. */
function oldest(probation: Map<string, OpenDump>, established: Map<string, OpenDump>, not?: OpenDump): OpenDump | undefined {
  for (const seg of [probation, established]) {
    for (const d of seg.values()) {
      if (d !== not) return d;
    }
  }
  return undefined;
}

export class OopsCollector {
  readonly opts: Required<OopsCollectorOptions>;
  readonly drops: Record<OopsDropReason, number> = {
    truncated: 0, version: 0, offsets: 0, packet_no: 0, too_big: 0, conflict: 0, duplicate: 0, late: 0, backlog: 0,
    evicted_unconfirmed: 0,
  };
  /** Bytes of chunk fingerprints kept for finished dumps (4 per chunk), capped by maxFinishedBytes. */
  private finishedBytes = 0;
  stats = {
    datagrams: 0, accepted: 0, dumpsComplete: 0, dumpsPartial: 0, bufferedBytes: 0, openDumps: 0,
    /** Dumps waiting to be written or being written, their cost in bytes, and the most there ever were. */
    queuedWrites: 0, queuedWriteBytes: 0, queuedWritesPeak: 0,
    /** Bytes of .log and sidecar files written (for --metrics). */
    bytesWritten: 0,
  };
  private open = new Map<string, OpenDump>();
  private probation = new Map<string, OpenDump>();   // one chunk, LRU order
  private established = new Map<string, OpenDump>(); // two chunks or more, LRU order
  private byHost = new Map<string, HostDumps>();
  private finished = new Map<string, FinishedDump>();
  private generations = new Map<string, number>();
  private hosts = new Set<string>();
  private completeQueue: QueuedWrite[] = [];
  private partialQueue: QueuedWrite[] = [];
  private writer: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: OopsCollectorOptions) {
    // An undefined limit means "the default", not "no limit".
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
    this.opts = { ...OOPS_DEFAULTS, disk: new DiskWatch(opts.dir, opts.onEvent), ...given } as Required<OopsCollectorOptions>;
    for (const k of ['maxOpenDumps', 'maxDumpsPerHost', 'maxQueuedWrites'] as const) {
      this.opts[k] = Math.max(1, Math.floor(this.opts[k]));
    }
    const sweepMs = Math.max(50, Math.min(1000, Math.floor(this.opts.idleMs / 4)));
    this.timer = setInterval(() => this.sweep(Date.now()), sweepMs);
    this.timer.unref();
  }

  /** Feed one UDP payload. Never throws on bad input. */
  handle(datagram: Buffer, from: { address: string; port: number }, now = Date.now()): void {
    if (this.closed) return;
    this.stats.datagrams++;
    const p = parseNetoops(datagram);
    if (!p.ok) {
      this.drops[p.reason]++;
      return;
    }
    const r = p.repr;
    const maxChunks = Math.floor(this.opts.maxBytesPerDump / NETOOPS_DATA_BYTES);
    if (r.packetCount > maxChunks) {
      this.drops.too_big++;
      return;
    }
    if (!this.hosts.has(from.address)) {
      if (this.hosts.size >= this.opts.maxFinished) this.hosts.delete(this.hosts.values().next().value as string);
      this.hosts.add(from.address);
      this.opts.onEvent({ event: 'new-host', host: from.address, proto: 'netoops' });
    }
    const baseKey = `${from.address}|${r.bootId}|${r.dumpId}`;
    const hash = fnv1a(p.data);
    let d = this.open.get(baseKey);
    if (!d) {
      const fin = this.finished.get(baseKey);
      if (fin && fin.packetCount === r.packetCount && fin.hashes[r.packetNo] === hash) {
        // A retransmit of a dump already written (the usual 2nd and 3rd rounds).
        this.drops.late++;
        return;
      }
      // A new dump (or one reusing a finished key with other content, or new chunks of a partial one: new file).
      d = this.startDump(baseKey, r, from, now);
    } else if (d.packetCount !== r.packetCount || d.type !== r.type || d.version !== r.version) {
      this.drops.conflict++;
      return;
    }
    const had = d.hashes.get(r.packetNo);
    if (had !== undefined) {
      if (had === hash) this.drops.duplicate++;
      else this.drops.conflict++;
      d.duplicates++;
      return;
    }
    const copy = Buffer.allocUnsafeSlow(NETOOPS_DATA_BYTES); // not from the shared pool: no slab kept alive
    p.data.copy(copy);
    d.chunks.set(r.packetNo, copy);
    d.hashes.set(r.packetNo, hash);
    d.lastSeen = now;
    this.stats.accepted++;
    this.stats.bufferedBytes += NETOOPS_DATA_BYTES;
    if (d.chunks.size === d.packetCount) {
      this.finish(d, 'complete');
      return;
    }
    if (d.chunks.size === 2) this.promote(d);
    this.touch(d);
    // Over the memory cap: others give way before the dump that just grew (a probation newcomer must not be the victim
    // of established dumps' bytes), and it goes only when it is alone.
    while (this.stats.bufferedBytes > this.opts.maxTotalBytes && this.open.size > 0) {
      this.evict(oldest(this.probation, this.established, d) ?? d);
    }
  }

  private startDump(key: string, r: NetoopsRepr, from: { address: string; port: number }, now: number): OpenDump {
    for (let mine = this.byHost.get(from.address); mine && mine.probation.size + mine.established.size >= this.opts.maxDumpsPerHost;
      mine = this.byHost.get(from.address)) {
      this.evict(oldest(mine.probation, mine.established)!);
    }
    while (this.open.size >= this.opts.maxOpenDumps) {
      this.evict(oldest(this.probation, this.established)!);
    }
    const gen = (this.generations.get(key) ?? 0) + 1;
    this.generations.set(key, gen);
    if (this.generations.size > this.opts.maxFinished * 2) {
      const first = this.generations.keys().next().value as string;
      this.generations.delete(first);
    }
    const d: OpenDump = {
      key, host: from.address, port: from.port, generation: gen,
      bootId: r.bootId, dumpId: r.dumpId, type: r.type, version: r.version, kernel: r.kernelVersion, header: snapshotHeader(r),
      packetCount: r.packetCount, chunks: new Map(), hashes: new Map(), duplicates: 0,
      firstSeen: now, lastSeen: now, established: false,
    };
    this.open.set(key, d);
    if (!this.byHost.has(d.host)) this.byHost.set(d.host, { probation: new Map(), established: new Map() });
    this.touch(d);
    this.stats.openDumps = this.open.size;
    return d;
  }

  /** Moves a dump to the most recently active end of its segment, globally and for its host. */
  private touch(d: OpenDump): void {
    const h = this.byHost.get(d.host)!;
    for (const seg of d.established ? [this.established, h.established] : [this.probation, h.probation]) {
      seg.delete(d.key);
      seg.set(d.key, d);
    }
  }

  /** Its second chunk: off probation (touch puts it into the established segment). */
  private promote(d: OpenDump): void {
    this.probation.delete(d.key);
    this.byHost.get(d.host)!.probation.delete(d.key);
    d.established = true;
  }

  /** Takes a dump out of reassembly: open table, both segments, its host, the buffered-bytes count. */
  private unlink(d: OpenDump): void {
    this.open.delete(d.key);
    this.probation.delete(d.key);
    this.established.delete(d.key);
    const h = this.byHost.get(d.host);
    if (h) {
      h.probation.delete(d.key);
      h.established.delete(d.key);
      if (h.probation.size + h.established.size === 0) this.byHost.delete(d.host);
    }
    this.stats.bufferedBytes -= d.chunks.size * NETOOPS_DATA_BYTES;
    this.stats.openDumps = this.open.size;
  }

  /** A dump that has to give way: written as partial if established, dropped unwritten if on probation. */
  private evict(d: OpenDump): void {
    if (d.established) {
      this.finish(d, 'evicted');
      return;
    }
    // One chunk of several that no second chunk confirmed: most likely a forged datagram; no file, no event line.
    this.unlink(d);
    d.chunks.clear();
    d.hashes.clear();
    this.drops.evicted_unconfirmed++;
    // It wrote nothing: give its generation back, so a real dump under this key is not named `-2`.
    if (this.generations.get(d.key) === d.generation) {
      if (d.generation > 1) this.generations.set(d.key, d.generation - 1);
      else this.generations.delete(d.key);
    }
  }

  /** Writes out every dump idle for longer than idleMs. Called by the timer; public for tests. */
  sweep(now: number): void {
    for (const d of [...this.open.values()]) {
      if (now - d.lastSeen >= this.opts.idleMs) this.finish(d, 'idle');
    }
  }

  private finish(d: OpenDump, reason: FinishReason): void {
    this.unlink(d);
    const complete = d.chunks.size === d.packetCount;
    const hashes = new Uint32Array(d.packetCount);
    for (const [k, h] of d.hashes) hashes[k] = h;
    d.hashes.clear();
    this.forget(d.key);
    this.finished.set(d.key, { packetCount: d.packetCount, hashes, generation: d.generation, complete });
    this.finishedBytes += hashes.byteLength;
    while (this.finished.size > this.opts.maxFinished || this.finishedBytes > this.opts.maxFinishedBytes) {
      this.forget(this.finished.keys().next().value as string);
    }

    // Oldest first: packet_no packet_count-1 … 0. Trailing NULs are the kernel's zero padding of a segment's last chunk.
    const parts: Buffer[] = [];
    const lens = new Int16Array(d.packetCount);
    let bytes = 0;
    for (let k = d.packetCount - 1; k >= 0; k--) {
      const c = d.chunks.get(k);
      if (!c) {
        lens[k] = -1;
        continue;
      }
      let end = c.length;
      while (end > 0 && c[end - 1] === 0) end--;
      parts.push(c.subarray(0, end));
      lens[k] = end;
      bytes += end;
    }
    const chunks = d.chunks.size;
    d.chunks.clear();
    const cost = bytes + lens.byteLength + QUEUED_WRITE_OVERHEAD;
    this.enqueue({ d, complete, reason, chunks, body: Buffer.concat(parts, bytes), lens, cost });
  }

  /** Room for a write of `cost`: an entry free and the bytes within maxTotalBytes (an empty queue takes any one). */
  private fits(cost: number): boolean {
    const s = this.stats;
    return s.queuedWrites < this.opts.maxQueuedWrites && (s.queuedWrites === 0 || s.queuedWriteBytes + cost <= this.opts.maxTotalBytes);
  }

  private enqueue(w: QueuedWrite): void {
    if (w.complete) {
      // A real report must not wait behind (or be refused for) a flood's partial dumps: the newest partial makes room.
      while (!this.fits(w.cost) && this.partialQueue.length > 0) {
        const p = this.partialQueue.pop()!;
        this.stats.queuedWrites--;
        this.stats.queuedWriteBytes -= p.cost;
        this.dropWrite(p, 'displaced by a complete dump (write queue full)');
      }
    }
    if (!this.fits(w.cost)) {
      this.dropWrite(w, 'write queue full (--max-queued-writes / --max-bytes)');
      return;
    }
    (w.complete ? this.completeQueue : this.partialQueue).push(w);
    this.stats.queuedWrites++;
    this.stats.queuedWriteBytes += w.cost;
    if (this.stats.queuedWrites > this.stats.queuedWritesPeak) this.stats.queuedWritesPeak = this.stats.queuedWrites;
    // One writer: started here when idle, it runs until both queues are empty.
    if (!this.writer) this.writer = this.drain();
  }

  private dropWrite(w: QueuedWrite, why: string): void {
    this.drops.backlog++;
    const d = w.d;
    this.opts.onEvent({ event: 'dump-dropped', host: d.host, boot_id: hex32(d.bootId), dump_id: d.dumpId,
      chunks: w.chunks, packet_count: d.packetCount, complete: w.complete, reason: why });
  }

  private async drain(): Promise<void> {
    for (;;) {
      const w = this.completeQueue.shift() ?? this.partialQueue.shift();
      if (!w) break;
      try {
        await this.write(w);
      } catch {
        // Write failures are the DiskWatch's (inside write); this is a listener that threw. It must not stop the
        // writer: the queue would never empty again.
      } finally {
        this.stats.queuedWrites--;
        this.stats.queuedWriteBytes -= w.cost;
      }
    }
    this.writer = null;
  }

  private async write(w: QueuedWrite): Promise<void> {
    const { d, complete, reason, chunks, body, lens } = w;
    const name = this.fileBase(d);
    const log = path.join(this.opts.dir, `${name}.log`);
    const sidecar = path.join(this.opts.dir, `${name}.json`);
    const missing: number[] = [];
    const gaps: { at: number; packet_no: number }[] = [];
    for (let k = d.packetCount - 1, at = 0; k >= 0; k--) {
      if (lens[k] >= 0) {
        at += lens[k];
      } else {
        missing.push(k);
        gaps.push({ at, packet_no: k });
      }
    }
    const ev: OopsEvent = {
      event: complete ? 'dump-complete' : 'dump-partial',
      host: d.host,
      boot_id: hex32(d.bootId),
      dump_id: d.dumpId,
      type: netoopsTypeName(d.type),
      kernel: d.kernel,
      chunks,
      packet_count: d.packetCount,
      bytes: body.length,
      file: log,
      sidecar,
    };
    if (!complete) {
      ev.reason = reason;
      ev.missing = missing;
    }
    const disk = this.opts.disk;
    try {
      await atomicWrite(log, body);
    } catch (err) {
      disk.failed(err, log, { dumps: 1 });
      return;
    }
    if (complete) this.stats.dumpsComplete++;
    else this.stats.dumpsPartial++;
    this.stats.bytesWritten += body.length;
    const meta = {
      host: d.host,
      port: d.port,
      ...d.header,
      complete,
      reason,
      received_chunks: chunks,
      duplicate_datagrams: d.duplicates,
      missing_packet_no: missing,
      // Where each missing chunk would sit in the .log (byte offset); each covered up to 1024 bytes of the original.
      gaps,
      log_bytes: body.length,
      first_seen: new Date(d.firstSeen).toISOString(),
      last_seen: new Date(d.lastSeen).toISOString(),
      log_file: path.basename(log),
    };
    try {
      const side = Buffer.from(JSON.stringify(meta, null, 2) + '\n');
      await atomicWrite(sidecar, side);
      this.stats.bytesWritten += side.length;
      disk.ok();
    } catch (err) {
      // The .log is the crash report itself: keep it, and say its sidecar is missing.
      disk.failed(err, sidecar, { sidecars: 1 });
      ev.sidecar = undefined;
      ev.sidecar_error = (err as Error).message;
    }
    this.opts.onEvent(ev);
  }

  private forget(key: string): void {
    const f = this.finished.get(key);
    if (!f) return;
    this.finishedBytes -= f.hashes.byteLength;
    this.finished.delete(key);
  }

  private fileBase(d: OpenDump): string {
    const host = d.host.replace(/[^0-9A-Za-z.-]/g, '_');
    const gen = d.generation > 1 ? `-${d.generation}` : '';
    return `oops-${host}-${hex32(d.bootId)}-${d.dumpId}${gen}`;
  }

  /** Bytes held in reassembly buffers (for tests and the summary). */
  get bufferedBytes(): number {
    return this.stats.bufferedBytes;
  }

  /** Writes every open dump out as partial (waiting for room in the write queue) and waits for all files. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.closed = true;
    for (const d of [...this.open.values()]) {
      const most = d.chunks.size * NETOOPS_DATA_BYTES + d.packetCount * 2 + QUEUED_WRITE_OVERHEAD;
      if (!this.fits(most)) await this.flush();
      this.finish(d, 'shutdown');
    }
    await this.flush();
  }

  /** Resolves when every queued file write has finished. */
  flush(): Promise<void> {
    return this.writer ?? Promise.resolve();
  }
}

/** `.<name>.tmp-<pid>`: hidden, and naming the process that writes it, so a successor can tell it was left behind. */
const TEMP_NAME = /^\..+\.tmp-(\d+)$/;

function tempPath(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
}

/**
 * Temp file in the same directory, fsync, rename: readers see the old name absent or the whole file. On any failure
 * the temp file is removed before the error is passed on: left behind, a hidden half file keeps a full disk full
 * while deleting the visible logs frees nothing.
 */
export async function atomicWrite(file: string, data: Uint8Array): Promise<void> {
  const tmp = tempPath(file);
  let fh: FileHandle | null = null;
  try {
    fh = await fsp.open(tmp, 'w', 0o644);
    await fh.writeFile(data);
    await fh.sync();
    const closing = fh;
    fh = null;
    await closing.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    await fh?.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true; // another receiver in this process (tests, a library user) may be writing
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * Removes the temp files a killed collector left in `dir` (`.<name>.tmp-<pid>` whose pid is no running process).
 * A collector writing into the same directory right now keeps its own. Call before receiving.
 */
export async function removeStaleTemps(dir: string): Promise<{ files: string[]; bytes: number }> {
  const files: string[] = [];
  let bytes = 0;
  for (const name of await fsp.readdir(dir)) {
    const m = TEMP_NAME.exec(name);
    const pid = m ? Number(m[1]) : 0;
    if (!(pid > 0) || pidAlive(pid)) continue;
    const p = path.join(dir, name);
    try {
      const st = await fsp.lstat(p);
      if (st.isDirectory()) continue;
      await fsp.unlink(p);
      files.push(name);
      bytes += st.size;
    } catch {
      /* gone meanwhile */
    }
  }
  return { files, bytes };
}

/** What failed writes lost: whole dumps, sidecars of dumps whose .log was written, netconsole records and bytes. */
export interface WriteLoss {
  dumps?: number;
  sidecars?: number;
  records?: number;
  bytes?: number;
}

/** ENOSPC: the filesystem is full; EDQUOT: the user's quota is. Both pass when someone frees space. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/**
 * One line per episode of failing writes instead of one per datagram: the first failure says `disk-full` (ENOSPC,
 * EDQUOT) or `write-error` (anything else) with the file and the reason; later failures with the same error only
 * count what they lost; the first write that succeeds again says `write-resumed` with the count. One DiskWatch per
 * directory, shared by the receivers writing into it.
 */
export class DiskWatch {
  /** Episodes and losses since start, for the summary. */
  readonly totals = { episodes: 0, dumps: 0, sidecars: 0, records: 0, bytes: 0 };
  private episode: { code: string; since: number; lost: Required<WriteLoss> } | null = null;

  constructor(private readonly dir: string, private readonly onEvent: (e: OopsEvent) => void) {}

  /** True between a failed write and the next one that succeeds. */
  get failing(): boolean {
    return this.episode !== null;
  }

  /** A write succeeded: ends an episode. Cheap when there is none (called per netconsole datagram). */
  ok(): void {
    const ep = this.episode;
    if (!ep) return;
    this.episode = null;
    const lost = Object.fromEntries(Object.entries(ep.lost).filter(([, v]) => v > 0).map(([k, v]) => [`lost_${k}`, v]));
    this.onEvent({ event: 'write-resumed', host: '-', dir: this.dir, after_s: Math.round((Date.now() - ep.since) / 100) / 10, ...lost });
  }

  failed(err: unknown, file: string, lost: WriteLoss): void {
    const e = err as NodeJS.ErrnoException;
    const code = e.code ?? 'unknown';
    let ep = this.episode;
    if (ep?.code !== code) {
      // A new episode, or the same one failing for another reason now (say so: the fix differs).
      if (!ep) ep = this.episode = { code, since: Date.now(), lost: { dumps: 0, sidecars: 0, records: 0, bytes: 0 } };
      ep.code = code;
      this.totals.episodes++;
      this.onEvent({ event: DISK_FULL.has(code) ? 'disk-full' : 'write-error', host: '-', dir: this.dir, file, error: e.message ?? String(err) });
    }
    for (const k of ['dumps', 'sidecars', 'records', 'bytes'] as const) {
      ep.lost[k] += lost[k] ?? 0;
      this.totals[k] += lost[k] ?? 0;
    }
  }
}
