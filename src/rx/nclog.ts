/**
 * The netconsole half of `rawpoll collect`: turns datagrams into one log file per source host,
 * `<dir>/netconsole/<host>.log`.
 *
 * - Basic datagrams (anything that is not an extended record) are appended as they come, like `nc -u -l`.
 * - Extended records are written whole, as the kernel would have sent them unfragmented
 *   (`[release,]prio,seq,usec,flag;text\n[ KEY=value\n…]`); ncfrag pieces are reassembled by (source, seq) first,
 *   in any order, duplicates ignored.
 * - The seq of each source (address:port) is tracked: a jump is reported as a `seq-gap` event, a seq going
 *   back to 0 as `seq-restart` (the sender rebooted or restarted), any other step back as `seq-late`. `new-host` and
 *   `seq-restart` name the sender's kernel (`release`) when its records carry the 'r' prefix.
 * - Newer kernels' userdata and sysdata lines are part of the record and stored with it (proto/netconsole.ts
 *   parseExtMessage splits them out). onRecord sees each record once, whole (collect --syslog); a reason it returns is
 *   counted in `drops` (syslog_busy …) but not in stats.dropped: the log has the record.
 * - Memory is bounded: at most maxOpenFragments records under reassembly in all, maxBytesPerHost bytes of them per
 *   source, maxRecordBytes per record, maxSources tracked seq counters / known hosts and maxOpenFiles open log
 *   files (LRU). With the defaults reassembly holds at most 64 x 256 KiB = 16 MiB (plus 1/8 for coverage bitmaps).
 * - CPU is bounded per datagram: an ncfrag piece costs O(its length) whatever else is open (NcfragReassembler), and
 *   a record takes at most maxFragmentsPerRecord pieces that bring new bytes; further ones are rejected.
 * - Whatever is dropped is counted in `drops` by reason — per datagram: too_big (ncfrag total over maxRecordBytes),
 *   bad_range (piece past its total), too_many_fragments; per record given up: evicted (maxOpenFragments or
 *   maxBytesPerHost reached), superseded (same seq, other record), shutdown; error (a receiver bug) — and reported
 *   as an event (`dropped` for a piece, only the first for a record over its fragment budget; `fragments-dropped`
 *   for a record). Nothing here throws on garbage.
 * - Writing is batched: add() keeps a host's records (views of the datagrams, or the reassembled record) in a list of
 *   that host, and flush() writes each list with one writev — `collect` calls it at the end of each receive engine
 *   batch (a write per record was a third of its time under a flood). handle() is add() + flush(). Nothing waits past flush();
 *   at most MAX_PENDING_BYTES wait at all (more flushes early).
 * - A write that fails (full disk) is cut back to the last whole record written, so the file holds whole records only;
 *   the records after it are counted (notWritten) and go to a DiskWatch: one line per full-disk episode, and writing
 *   resumes by itself with the first batch that fits.
 */
import { mkdirSync, openSync, writevSync, closeSync, fstatSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { parseExtDatagram, NcfragReassembler, type EvictedPartial, type NcfragDropReason } from '../proto/netconsole.js';
import { DiskWatch } from './oopscollect.js';
import type { SyslogDropReason } from './syslog.js';

export interface CollectorEvent { event: string; host: string; [k: string]: unknown }

export interface NetconsoleCollectorOptions {
  dir: string;
  onEvent: (e: CollectorEvent) => void;
  /** Records under ncfrag reassembly, all sources together (default 64). */
  maxOpenFragments?: number;
  /** Reassembly buffer bytes per source (default 1 MiB). */
  maxBytesPerHost?: number;
  /** Largest ncfrag total accepted (default 256 KiB; a kernel record is a few KiB). */
  maxRecordBytes?: number;
  /** ncfrag pieces (that brought new bytes) one record may take (default 1024; the kernel's take a dozen or so). */
  maxFragmentsPerRecord?: number;
  /** Log files kept open at once (default 32; others are reopened on demand). */
  maxOpenFiles?: number;
  /** Sources whose seq is tracked (default 4096, least recently heard forgotten first). */
  maxSources?: number;
  /** Where write failures go; shared with the netoops receiver by `collect`. Default: one for `dir`. */
  disk?: DiskWatch;
  /**
   * Each record as it is written (an extended record whole — reassembled if it came in pieces — or a basic
   * datagram), e.g. to syslog (`collect --syslog`). Called synchronously: `record` is valid only during the call.
   * A returned reason counts the record as dropped there (it is in the log all the same).
   */
  onRecord?: (record: Buffer, from: { address: string; port: number }, fragments: number) => SyslogDropReason | null | void;
}

export interface NetconsoleCollectorStats {
  datagrams: number; basic: number; records: number; fragments: number; dropped: number; bytesWritten: number;
  /** Lines or records not written because the write failed (full disk). */
  notWritten: number;
}

interface SourceState { lastSeq: number }

/** One host's records waiting for flush(): each Buffer is one whole record (or basic datagram). */
interface HostPending { records: Buffer[]; bytes: number }

/** Bytes add() lets wait for flush() before it flushes by itself (collect's batches hold far less: 1024 datagrams). */
const MAX_PENDING_BYTES = 16 << 20;

export type NetconsoleDropReason = NcfragDropReason | 'error' | SyslogDropReason;

export const NETCONSOLE_DEFAULTS = {
  maxOpenFragments: 64,
  maxBytesPerHost: 1024 * 1024,
  maxRecordBytes: 256 * 1024,
  maxFragmentsPerRecord: 1024,
  maxOpenFiles: 32,
  maxSources: 4096,
};

export class NetconsoleCollector {
  readonly dir: string;
  readonly stats: NetconsoleCollectorStats = { datagrams: 0, basic: 0, records: 0, fragments: 0, dropped: 0, bytesWritten: 0, notWritten: 0 };
  /** What `stats.dropped` counts, by reason: rejected pieces and records given up (see the file comment). */
  readonly drops: Record<NetconsoleDropReason, number> = {
    too_big: 0, bad_range: 0, too_many_fragments: 0, evicted: 0, superseded: 0, shutdown: 0, error: 0,
    syslog_busy: 0, syslog_down: 0, syslog_error: 0,
  };
  private readonly onEvent: (e: CollectorEvent) => void;
  private readonly reasm: NcfragReassembler;
  private readonly files = new Map<string, number>();        // host -> fd, in LRU order
  private readonly knownHosts = new Set<string>();
  private readonly sources = new Map<string, SourceState>();  // "addr:port" -> seq state, in LRU order
  // The most recently heard source: under a flood one source sends most datagrams, and it is already last in
  // `sources` (no re-insert) and its key is already made.
  private last: { host: string; port: number; source: string; st: SourceState | null } = { host: '', port: -1, source: '', st: null };
  private readonly toWrite = new Map<string, HostPending>();  // host -> records waiting for flush()
  private toWriteBytes = 0;
  private readonly maxOpenFiles: number;
  private readonly maxSources: number;
  private readonly disk: DiskWatch;
  private readonly onRecord: NetconsoleCollectorOptions['onRecord'];
  private closed = false;

  constructor(opts: NetconsoleCollectorOptions) {
    this.dir = join(opts.dir, 'netconsole');
    mkdirSync(this.dir, { recursive: true });
    this.onEvent = opts.onEvent;
    const d = NETCONSOLE_DEFAULTS;
    this.maxOpenFiles = Math.max(1, opts.maxOpenFiles ?? d.maxOpenFiles);
    this.maxSources = Math.max(1, opts.maxSources ?? d.maxSources);
    this.disk = opts.disk ?? new DiskWatch(opts.dir, opts.onEvent);
    this.onRecord = opts.onRecord;
    this.reasm = new NcfragReassembler({
      maxOpen: opts.maxOpenFragments ?? d.maxOpenFragments,
      maxBytesPerKey: opts.maxBytesPerHost ?? d.maxBytesPerHost,
      maxRecordBytes: opts.maxRecordBytes ?? d.maxRecordBytes,
      maxFragmentsPerRecord: opts.maxFragmentsPerRecord ?? d.maxFragmentsPerRecord,
      onEvict: (e) => this.evicted(e),
    });
  }

  /** Path of the log file a host's lines go to. */
  logPath(host: string): string {
    return join(this.dir, `${safeName(host)}.log`);
  }

  /** Records still waiting for ncfrag pieces and the bytes reserved for them. */
  get pending(): { records: number; bytes: number } {
    return { records: this.reasm.openCount, bytes: this.reasm.openBytes };
  }

  /** One datagram, its record written at once. */
  handle(datagram: Buffer, from: { address: string; port: number }): void {
    this.add(datagram, from);
    this.flush();
  }

  /**
   * One datagram, its record (if it completes one) kept for flush(): the caller calls flush() before `datagram`'s
   * memory is reused or released — a basic line or an unfragmented record is written from the datagram itself.
   */
  add(datagram: Buffer, from: { address: string; port: number }): void {
    if (this.closed) return;
    const host = from.address;
    try {
      this.stats.datagrams++;
      const dg = parseExtDatagram(datagram);
      if (!this.knownHosts.has(host)) {
        // Bounded like the seq table: a host forgotten under a flood of sources is announced again when heard.
        while (this.knownHosts.size >= this.maxSources) this.knownHosts.delete(this.knownHosts.values().next().value as string);
        this.knownHosts.add(host);
        // The sender's kernel when it prepends it ('r'): which kernel a host runs, in the event stream.
        this.emit({ event: 'new-host', host, proto: 'netconsole', file: this.logPath(host), ...(dg?.release ? { release: dg.release } : {}) });
      }
      if (!dg) {
        this.stats.basic++;
        this.queue(host, datagram);
        if (this.onRecord) this.passOn(datagram, from, 1);
        return;
      }
      const last = this.last;
      const source = host === last.host && from.port === last.port ? last.source : `${host}:${from.port}`;
      if (!dg.frag && dg.header.length + 1 + dg.body.length === datagram.length) {
        // Unfragmented: the record is the datagram itself (its header, re-joined by the parser, is the datagram's own).
        this.record(host, from.port, source, dg.seq, datagram, 1);
        return;
      }
      if (dg.frag) this.stats.fragments++;
      const res = this.reasm.add(source, dg);
      switch (res.kind) {
        case 'complete':
          this.record(host, from.port, source, res.record.seq, res.record.bytes, res.record.fragments);
          break;
        case 'rejected':
          this.stats.dropped++;
          this.drops[res.code]++;
          // One line for a record over its fragment budget, not one per piece of the flood: the count has them all.
          if (!res.repeat) this.emit({ event: 'fragment-rejected', host, port: from.port, seq: dg.seq, code: res.code, reason: res.reason });
          break;
        case 'duplicate':
          this.emit({ event: 'duplicate-fragment', host, port: from.port, seq: dg.seq, offset: dg.frag?.offset });
          break;
        case 'partial':
          break;
      }
    } catch (err) {
      // A receiver bug must not kill the receiver (write failures are the DiskWatch's); say so and go on.
      this.stats.dropped++;
      this.drops.error++;
      this.emit({ event: 'error', host, error: (err as Error).message });
    }
  }

  /**
   * Writes the records add() kept: each host's with one writev, in the order they came. A write that fails keeps the
   * whole records it wrote and cuts off the rest (see writeRecords).
   */
  flush(): void {
    if (this.toWrite.size === 0) return;
    const hosts = [...this.toWrite];
    this.toWrite.clear();   // first: whatever happens below, nothing is held past this flush
    this.toWriteBytes = 0;
    for (const [host, p] of hosts) this.writeRecords(host, p);
  }

  /**
   * Log rotation (logrotate/newsyslog rename the file, then SIGHUP): what is waiting is written to the files open now
   * — it came before the signal —, then every host's file is closed, to be opened again under its name at its next
   * record. Returns how many files were closed.
   */
  reopen(): number {
    if (this.closed) return 0;
    this.flush();
    const n = this.files.size;
    for (const fd of this.files.values()) {
      try { closeSync(fd); } catch { /* already gone */ }
    }
    this.files.clear();
    return n;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.reasm.flush('incomplete at shutdown');
    this.flush();
    this.closed = true;
    for (const fd of this.files.values()) {
      try { closeSync(fd); } catch { /* already gone */ }
    }
    this.files.clear();
  }

  private record(host: string, port: number, source: string, seq: number, bytes: Buffer, fragments: number): void {
    const last = this.last;
    const again = source === last.source && last.st !== null;
    let st = again ? last.st : this.sources.get(source);
    if (st) {
      if (!again) this.sources.delete(source);   // re-insert: most recently heard last
      if (seq > st.lastSeq + 1) {
        this.emit({ event: 'seq-gap', host, port, expected: st.lastSeq + 1, got: seq, missing: seq - st.lastSeq - 1 });
      } else if (seq <= st.lastSeq) {
        // A restart with the release prefix says which kernel the host came back with.
        const release = seq === 0 ? releaseOf(bytes) : undefined;
        this.emit({ event: seq === 0 ? 'seq-restart' : 'seq-late', host, port, expected: st.lastSeq + 1, got: seq, ...(release ? { release } : {}) });
      }
      if (seq > st.lastSeq || seq === 0) st.lastSeq = seq;
    } else {
      st = { lastSeq: seq };
      while (this.sources.size >= this.maxSources) this.sources.delete(this.sources.keys().next().value as string);
    }
    if (!again) {
      this.sources.set(source, st);
      this.last = { host, port, source, st };
    }
    this.stats.records++;
    if (fragments > 1) this.emit({ event: 'reassembled', host, port, seq, fragments, bytes: bytes.length });
    this.queue(host, bytes);
    if (this.onRecord) this.passOn(bytes, { address: host, port }, fragments);
  }

  private passOn(bytes: Buffer, from: { address: string; port: number }, fragments: number): void {
    const why = this.onRecord!(bytes, from, fragments);
    if (why) this.drops[why]++;
  }

  private evicted(e: EvictedPartial): void {
    this.stats.dropped++;
    this.drops[e.code]++;
    const i = e.key.lastIndexOf(':');
    this.emit({
      event: 'fragments-dropped', host: e.key.slice(0, i), port: Number(e.key.slice(i + 1)), seq: e.seq,
      have: e.have, total: e.total, fragments: e.fragments, code: e.code, reason: e.reason,
    });
  }

  private queue(host: string, record: Buffer): void {
    let p = this.toWrite.get(host);
    if (!p) this.toWrite.set(host, (p = { records: [], bytes: 0 }));
    p.records.push(record);
    p.bytes += record.length;
    this.toWriteBytes += record.length;
    if (this.toWriteBytes >= MAX_PENDING_BYTES) this.flush();
  }

  /** The host's log file, opened (append) if it is not, as the most recently used; at most maxOpenFiles stay open. */
  private fd(host: string): number {
    let fd = this.files.get(host);
    if (fd === undefined) {
      while (this.files.size >= this.maxOpenFiles) {
        const [oldHost, oldFd] = this.files.entries().next().value as [string, number];
        this.files.delete(oldHost);
        try { closeSync(oldFd); } catch { /* ignore */ }
      }
      fd = openSync(this.logPath(host), 'a');
    } else {
      this.files.delete(host);
    }
    this.files.set(host, fd);
    return fd;
  }

  /**
   * One writev for a host's records (libuv splits a list over IOV_MAX into several, and a short write is continued
   * from where it stopped). On failure the file is cut back to the last whole record written; the rest is lost, and
   * counted: the log never holds half a record.
   */
  private writeRecords(host: string, p: HostPending): void {
    const { records, bytes } = p;
    let fd: number | undefined;
    let done = 0;   // bytes of `records` written
    try {
      fd = this.fd(host);
      let rest = records;
      while (done < bytes) {
        const n = writevSync(fd, rest);
        if (n <= 0) throw Object.assign(new Error(`EIO: writev wrote ${n} of ${bytes - done} bytes`), { code: 'EIO' });
        done += n;
        if (done < bytes) rest = remainder(records, done);
      }
    } catch (err) {
      let whole = 0;   // records wholly written, and their bytes
      let wholeBytes = 0;
      while (whole < records.length && wholeBytes + records[whole].length <= done) wholeBytes += records[whole++].length;
      // A full disk took part of a record: cut it off again.
      if (done > wholeBytes && fd !== undefined) {
        try { ftruncateSync(fd, fstatSync(fd).size - (done - wholeBytes)); } catch { /* the record stays cut */ }
      }
      this.stats.bytesWritten += wholeBytes;
      this.stats.notWritten += records.length - whole;
      // Whole records written before the failure do not end an episode: the batch still ended failing.
      this.disk.failed(err, this.logPath(host), { records: records.length - whole, bytes: bytes - wholeBytes });
      return;
    }
    this.stats.bytesWritten += bytes;
    this.disk.ok();
  }

  private emit(e: CollectorEvent): void {
    try { this.onEvent(e); } catch { /* a faulty listener must not stop reception */ }
  }
}

/** The 'r' prefix of an extended record (`6.17.0,6,…`: a first field that is not a number, as parseExtDatagram), or undefined. */
function releaseOf(record: Buffer): string | undefined {
  const comma = record.subarray(0, 65).indexOf(0x2c);
  if (comma <= 0) return undefined;
  const first = record.toString('latin1', 0, comma);
  return /^\d+$/.test(first) ? undefined : first;
}

/** What is left of `records` after their first `done` bytes (a short write's continuation). */
function remainder(records: Buffer[], done: number): Buffer[] {
  let i = 0;
  while (done >= records[i].length) done -= records[i++].length;
  return [records[i].subarray(done), ...records.slice(i + 1)];
}

/** A host address as a file name: IPv4/IPv6 characters kept, anything else replaced. */
function safeName(host: string): string {
  const s = host.replace(/[^0-9A-Za-z.:_-]/g, '_').slice(0, 100);
  return s === '' || s === '.' || s === '..' ? '_' : s;
}
