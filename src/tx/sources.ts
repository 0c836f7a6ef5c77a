/**
 * Where `rawpoll netconsole` gets its messages: lines from a stream (stdin), lines appended to a file followed like
 * `tail -F` (survives rotation and truncation), and the kernel log itself from /dev/kmsg.
 *
 * All three are async iterables that stop when the AbortSignal fires (SIGINT/SIGTERM in the CLI).
 */
import { openSync, readSync, closeSync, fstatSync, statSync, constants as C } from 'node:fs';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuntimeError } from '../errors.js';
import { parseKmsgRecord, type KmsgRecord } from '../proto/kmsg.js';

export type { KmsgRecord };

/** Longest line handed on as one message; longer ones are cut (a kernel record is at most ~1 KiB of text). */
export const MAX_LINE = 64 * 1024;

/** Splits a byte stream at '\n' (the newline is not included). A last line without '\n' is still delivered. */
export class LineSplitter {
  private parts: Buffer[] = [];
  private len = 0;
  constructor(private readonly maxLine = MAX_LINE) {}

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      let piece = chunk.subarray(start, end);
      while (this.len + piece.length > this.maxLine) {
        const take = this.maxLine - this.len;
        this.parts.push(piece.subarray(0, take));
        out.push(Buffer.concat(this.parts));
        this.parts = [];
        this.len = 0;
        piece = piece.subarray(take);
      }
      if (piece.length) {
        this.parts.push(Buffer.from(piece));   // copy: the caller may reuse its chunk buffer
        this.len += piece.length;
      }
      if (nl < 0) break;
      out.push(this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts));
      this.parts = [];
      this.len = 0;
      start = nl + 1;
    }
    return out;
  }

  /** What is left without a final newline (end of input). */
  end(): Buffer | null {
    if (!this.len) return null;
    const b = Buffer.concat(this.parts);
    this.parts = [];
    this.len = 0;
    return b;
  }
}

/** Lines of a readable stream (standard input). */
export async function* streamLines(stream: Readable, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const split = new LineSplitter();
  const onAbort = () => stream.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of stream) {
      for (const l of split.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))) yield l;
      if (signal?.aborted) return;
    }
  } catch (e) {
    if (!signal?.aborted) throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  const last = split.end();
  if (last && !signal?.aborted) yield last;
}

export interface FollowEvent { kind: 'rotated' | 'truncated' | 'missing' | 'appeared'; path: string }

/**
 * `tail -F`: lines appended to `path`. Starts at the end unless fromStart. When the name points to a new file
 * (rotation: inode changed) the rest of the old file is read first, then the new one from its start; when the file
 * shrinks (truncation) it is read again from the start. A missing file is waited for.
 */
export async function* followLines(path: string, o: {
  fromStart?: boolean; signal?: AbortSignal; pollMs?: number; onEvent?: (e: FollowEvent) => void;
  /** Called once the file's start position is fixed (or it was found missing): lines written after this are sent. */
  onReady?: () => void;
} = {}): AsyncGenerator<Buffer> {
  const pollMs = o.pollMs ?? 100;
  const buf = Buffer.allocUnsafe(64 * 1024);
  let fd = -1;
  let ino = -1;
  let pos = 0;
  let split = new LineSplitter();
  let first = true;
  let missingSaid = false;
  const open = (atEnd: boolean): boolean => {
    try {
      fd = openSync(path, C.O_RDONLY | C.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new RuntimeError(`cannot follow ${path}: ${(e as Error).message}`);
    }
    const st = fstatSync(fd);
    ino = st.ino;
    pos = atEnd ? st.size : 0;
    split = new LineSplitter();
    return true;
  };
  const drain = function* (): Generator<Buffer> {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) return;
      pos += n;
      for (const l of split.push(buf.subarray(0, n))) yield l;
    }
  };
  try {
    while (!o.signal?.aborted) {
      if (fd < 0) {
        const opened = open(first && !o.fromStart);
        if (first) o.onReady?.();
        if (!opened) {
          if (!missingSaid) o.onEvent?.({ kind: 'missing', path });
          missingSaid = true;
          first = false;
          await sleep(pollMs, undefined, { signal: o.signal }).catch(() => undefined);
          continue;
        }
        if (missingSaid) o.onEvent?.({ kind: 'appeared', path });
        missingSaid = false;
        first = false;
      }
      yield* drain();
      // Rotation / truncation checks by name, like tail -F.
      let st: ReturnType<typeof statSync> | null = null;
      try { st = statSync(path); } catch { st = null; }
      if (!st || st.ino !== ino) {
        yield* drain();                      // whatever was written to the old file before the rename
        const rest = split.end();
        if (rest) yield rest;
        closeSync(fd);
        fd = -1;
        if (st) o.onEvent?.({ kind: 'rotated', path });
        continue;
      }
      if (st.size < pos) {
        o.onEvent?.({ kind: 'truncated', path });
        pos = 0;
        split = new LineSplitter();
        continue;
      }
      await sleep(pollMs, undefined, { signal: o.signal }).catch(() => undefined);
    }
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** What kmsgRecords reads from: /dev/kmsg itself, or a stand-in for tests. read() throws with code EAGAIN/EPIPE. */
export interface KmsgDevice {
  read(buf: Buffer): number;
  close(): void;
}

export interface KmsgOptions {
  fromStart?: boolean;
  signal?: AbortSignal;
  pollMs?: number;
  /** Called when records were overwritten in the ring buffer before we read them (EPIPE / a seq jump). */
  onLost?: (lost: number, nextSeq: number) => void;
  /** Called once the reader stands at its starting point (after skipping the backlog): records written later arrive. */
  onReady?: () => void;
  path?: string;
  device?: KmsgDevice;
}

function openKmsg(path: string): KmsgDevice {
  let fd: number;
  try {
    fd = openSync(path, C.O_RDONLY | C.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RuntimeError(`cannot read the kernel log ${path}: ${code === 'EACCES' || code === 'EPERM'
      ? 'permission denied (run as root, or set kernel.dmesg_restrict=0)' : (e as Error).message}`);
  }
  return { read: (buf) => readSync(fd, buf, 0, buf.length, null), close: () => closeSync(fd) };
}

/**
 * Records from /dev/kmsg, forever (until the signal). Starts at the current end unless fromStart. When the ring
 * buffer overran us the kernel answers EPIPE and moves our position to the oldest record it still has: we count
 * the records lost from the seq jump and carry on.
 */
export async function* kmsgRecords(o: KmsgOptions = {}): AsyncGenerator<KmsgRecord> {
  const path = o.path ?? '/dev/kmsg';
  const pollMs = o.pollMs ?? 50;
  const dev = o.device ?? openKmsg(path);
  // A record is at most ~8 KiB (text escaped + dictionary); a short buffer would get EINVAL.
  const buf = Buffer.allocUnsafe(16 * 1024);
  let lastSeq: number | null = null;
  let epipe = false;
  const readOne = (): Buffer | null | 'again' => {
    for (;;) {
      try {
        const n = dev.read(buf);
        return n > 0 ? Buffer.from(buf.subarray(0, n)) : null;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return 'again';
        if (code !== 'EPIPE') throw new RuntimeError(`reading ${path} failed: ${(e as Error).message}`);
        epipe = true;   // the kernel already moved us to the oldest record it has: read again
      }
    }
  };
  try {
    if (!o.fromStart) {
      // No lseek(SEEK_END) in node: read and drop what is there, remembering its last seq.
      for (;;) {
        const r = readOne();
        if (r === 'again' || r === null) break;
        const p = parseKmsgRecord(r);
        if (p) lastSeq = p.seq;
      }
      epipe = false;
    }
    o.onReady?.();
    while (!o.signal?.aborted) {
      const r = readOne();
      if (r === 'again' || r === null) {
        await sleep(pollMs, undefined, { signal: o.signal }).catch(() => undefined);
        continue;
      }
      const p = parseKmsgRecord(r);
      if (!p) continue;
      // EPIPE says "overrun"; the seq jump says by how much (unknown before the first record with --from-start).
      if (lastSeq !== null && p.seq > lastSeq + 1) o.onLost?.(p.seq - lastSeq - 1, p.seq);
      epipe = false;
      lastSeq = p.seq;
      yield p;
    }
  } finally {
    dev.close();
  }
}
