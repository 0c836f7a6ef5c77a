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
 * - Bounded memory: at most `maxOpenDumps` dumps in reassembly, at most `maxBytesPerDump` bytes each (a datagram
 *   announcing more chunks than that is dropped as `too_big`), at most `maxTotalBytes` buffered in all; going over a
 *   cap writes the least recently active dump out as partial (reason `evicted`). Finished-dump memory is a bounded LRU.
 *   Dumps queued for writing count against maxTotalBytes as well: an evicted dump that would exceed it is dropped
 *   (`dump-dropped`, drop reason `backlog`) instead of queued, so a flood cannot outrun the disk.
 *   Finished dumps leave only a 4-byte fingerprint per chunk behind, at most maxFinishedBytes of them (LRU).
 * - Garbage never throws: every datagram that is not a plausible netoops datagram is counted by reason.
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
  maxBytesPerDump?: number;
  maxTotalBytes?: number;
  /** Finished dumps remembered to recognise late retransmits (LRU), by count and by fingerprint bytes. */
  maxFinished?: number;
  maxFinishedBytes?: number;
  /** Where write failures go; shared with the netconsole receiver by `collect`. Default: one for `dir`. */
  disk?: DiskWatch;
}

export const OOPS_DEFAULTS = {
  idleMs: 10_000,
  maxOpenDumps: 32,
  maxBytesPerDump: 4 * 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
  maxFinished: 4096,
  maxFinishedBytes: 4 * 1024 * 1024,
};

export type OopsDropReason = 'truncated' | 'version' | 'offsets' | 'packet_no' | 'too_big' | 'conflict' | 'duplicate' | 'late' | 'backlog';

interface OpenDump {
  key: string;
  host: string;
  port: number;
  generation: number;
  first: NetoopsRepr; // header of the first datagram (views are not kept: see snapshotHeader)
  header: Record<string, unknown>;
  packetCount: number;
  chunks: Map<number, Buffer>;
  /** FNV-1a of each chunk by packet_no, 0 = not received (a real hash of 0 is stored as 1). */
  hashes: Uint32Array;
  received: number;
  duplicates: number;
  firstSeen: number;
  lastSeen: number;
}

interface FinishedDump {
  packetCount: number;
  hashes: Uint32Array;
  generation: number;
  complete: boolean;
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

export class OopsCollector {
  readonly opts: Required<OopsCollectorOptions>;
  readonly drops: Record<OopsDropReason, number> = {
    truncated: 0, version: 0, offsets: 0, packet_no: 0, too_big: 0, conflict: 0, duplicate: 0, late: 0, backlog: 0,
  };
  /** Bytes of finished dumps queued for writing: counted against maxTotalBytes too, so a flood cannot outrun the disk. */
  private pendingWriteBytes = 0;
  /** Bytes of chunk fingerprints kept for finished dumps (4 per chunk), capped by maxFinishedBytes. */
  private finishedBytes = 0;
  stats = { datagrams: 0, accepted: 0, dumpsComplete: 0, dumpsPartial: 0, bufferedBytes: 0, openDumps: 0 };
  private open = new Map<string, OpenDump>(); // insertion order refreshed on activity = LRU order
  private finished = new Map<string, FinishedDump>();
  private generations = new Map<string, number>();
  private hosts = new Set<string>();
  private writes: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: OopsCollectorOptions) {
    // An undefined limit means "the default", not "no limit".
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
    this.opts = { ...OOPS_DEFAULTS, disk: new DiskWatch(opts.dir, opts.onEvent), ...given } as Required<OopsCollectorOptions>;
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
    } else if (d.packetCount !== r.packetCount || d.first.type !== r.type || d.first.version !== r.version) {
      this.drops.conflict++;
      return;
    }
    const had = d.hashes[r.packetNo];
    if (had !== 0) {
      if (had === hash) this.drops.duplicate++;
      else this.drops.conflict++;
      d.duplicates++;
      return;
    }
    const copy = Buffer.allocUnsafeSlow(NETOOPS_DATA_BYTES); // not from the shared pool: no slab kept alive
    p.data.copy(copy);
    d.chunks.set(r.packetNo, copy);
    d.hashes[r.packetNo] = hash;
    d.received++;
    d.lastSeen = now;
    this.stats.accepted++;
    this.stats.bufferedBytes += NETOOPS_DATA_BYTES;
    // refresh LRU position
    this.open.delete(baseKey);
    this.open.set(baseKey, d);
    if (d.received === d.packetCount) {
      this.finish(d, 'complete');
    } else {
      while (this.stats.bufferedBytes > this.opts.maxTotalBytes && this.open.size > 0) {
        this.finish(this.open.values().next().value as OpenDump, 'evicted');
      }
    }
  }

  private startDump(key: string, r: NetoopsRepr, from: { address: string; port: number }, now: number): OpenDump {
    while (this.open.size >= this.opts.maxOpenDumps) {
      this.finish(this.open.values().next().value as OpenDump, 'evicted');
    }
    const gen = (this.generations.get(key) ?? 0) + 1;
    this.generations.set(key, gen);
    if (this.generations.size > this.opts.maxFinished * 2) {
      const oldest = this.generations.keys().next().value as string;
      this.generations.delete(oldest);
    }
    const d: OpenDump = {
      key, host: from.address, port: from.port, generation: gen, first: r, header: snapshotHeader(r),
      packetCount: r.packetCount, chunks: new Map(), hashes: new Uint32Array(r.packetCount), received: 0, duplicates: 0,
      firstSeen: now, lastSeen: now,
    };
    this.open.set(key, d);
    this.stats.openDumps = this.open.size;
    return d;
  }

  /** Writes out every dump idle for longer than idleMs. Called by the timer; public for tests. */
  sweep(now: number): void {
    for (const d of [...this.open.values()]) {
      if (now - d.lastSeen >= this.opts.idleMs) this.finish(d, 'idle');
    }
  }

  private finish(d: OpenDump, reason: 'complete' | 'idle' | 'evicted' | 'shutdown'): void {
    this.open.delete(d.key);
    this.stats.openDumps = this.open.size;
    this.stats.bufferedBytes -= d.chunks.size * NETOOPS_DATA_BYTES;
    const complete = d.received === d.packetCount;
    this.forget(d.key);
    this.finished.set(d.key, { packetCount: d.packetCount, hashes: d.hashes, generation: d.generation, complete });
    this.finishedBytes += d.hashes.byteLength;
    while (this.finished.size > this.opts.maxFinished || this.finishedBytes > this.opts.maxFinishedBytes) {
      this.forget(this.finished.keys().next().value as string);
    }

    // Oldest first: packet_no packet_count-1 … 0. Trailing NULs are the kernel's zero padding of a segment's last chunk.
    const parts: Buffer[] = [];
    const missing: number[] = [];
    const gaps: { at: number; packet_no: number }[] = [];
    let bytes = 0;
    for (let k = d.packetCount - 1; k >= 0; k--) {
      const c = d.chunks.get(k);
      if (!c) {
        missing.push(k);
        gaps.push({ at: bytes, packet_no: k });
        continue;
      }
      let end = c.length;
      while (end > 0 && c[end - 1] === 0) end--;
      parts.push(c.subarray(0, end));
      bytes += end;
    }
    d.chunks.clear();
    const name = this.fileBase(d);
    const log = path.join(this.opts.dir, `${name}.log`);
    const sidecar = path.join(this.opts.dir, `${name}.json`);
    const meta = {
      host: d.host,
      port: d.port,
      ...d.header,
      complete,
      reason,
      received_chunks: d.received,
      duplicate_datagrams: d.duplicates,
      missing_packet_no: missing,
      // Where each missing chunk would sit in the .log (byte offset); each covered up to 1024 bytes of the original.
      gaps,
      log_bytes: bytes,
      first_seen: new Date(d.firstSeen).toISOString(),
      last_seen: new Date(d.lastSeen).toISOString(),
      log_file: path.basename(log),
    };
    const ev: OopsEvent = {
      event: complete ? 'dump-complete' : 'dump-partial',
      host: d.host,
      boot_id: hex32(d.first.bootId),
      dump_id: d.first.dumpId,
      type: netoopsTypeName(d.first.type),
      kernel: d.first.kernelVersion,
      chunks: d.received,
      packet_count: d.packetCount,
      bytes,
      file: log,
      sidecar,
    };
    if (!complete) {
      ev.reason = reason;
      ev.missing = missing;
    }
    if (reason === 'evicted' && this.pendingWriteBytes + bytes > this.opts.maxTotalBytes) {
      // Evictions are coming faster than the disk takes them (a flood): drop this partial dump rather than queue it.
      this.drops.backlog++;
      this.opts.onEvent({ event: 'dump-dropped', host: d.host, boot_id: hex32(d.first.bootId), dump_id: d.first.dumpId,
        chunks: d.received, packet_count: d.packetCount, reason: 'write backlog over --max-bytes' });
      return;
    }
    const body = Buffer.concat(parts);
    this.pendingWriteBytes += body.length;
    const disk = this.opts.disk;
    this.writes = this.writes
      .then(async () => {
        try {
          await atomicWrite(log, body);
        } catch (err) {
          disk.failed(err, log, { dumps: 1 });
          return;
        }
        if (complete) this.stats.dumpsComplete++;
        else this.stats.dumpsPartial++;
        try {
          await atomicWrite(sidecar, Buffer.from(JSON.stringify(meta, null, 2) + '\n'));
          disk.ok();
        } catch (err) {
          // The .log is the crash report itself: keep it, and say its sidecar is missing.
          disk.failed(err, sidecar, { sidecars: 1 });
          ev.sidecar = undefined;
          ev.sidecar_error = (err as Error).message;
        }
        this.opts.onEvent(ev);
      })
      .finally(() => {
        this.pendingWriteBytes -= body.length;
      });
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
    return `oops-${host}-${hex32(d.first.bootId)}-${d.first.dumpId}${gen}`;
  }

  /** Bytes held in reassembly buffers (for tests and the summary). */
  get bufferedBytes(): number {
    return this.stats.bufferedBytes;
  }

  /** Writes every open dump out as partial and waits for all files. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const d of [...this.open.values()]) this.finish(d, 'shutdown');
    this.closed = true;
    await this.writes;
  }

  /** Resolves when every queued file write has finished. */
  flush(): Promise<void> {
    return this.writes;
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
