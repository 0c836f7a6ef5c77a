import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, fsyncSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { RuntimeError, UsageError } from '../errors.js';

/**
 * The state behind `rawpoll oops --one-shot FILE` and `--rate-limit N/PERIOD`, kept in one small JSON file so it
 * survives across invocations (the kernel patch kept it in memory; a userland sender runs once per report).
 *
 * One-shot (the netoops patch): after the first real (non-soft) dump the sender stays silent until re-armed; soft
 * dumps never disarm and are never held back by it. A missing file means armed (a fresh machine reports its first oops).
 * Rate limit (the reviewers' alternative): at most N dumps of any type per PERIOD, counted from the send times kept here.
 * Invocations are serialised by FILE.lock (O_EXCL, holding our pid; a lock whose pid is gone is stale and taken over),
 * and the file is replaced atomically (temp + fsync + rename).
 */

export interface OopsState {
  armed: boolean;
  disarmedAt: string | null;
  /** ms since the epoch of every dump sent within the longest rate-limit period seen. */
  sent: number[];
}

export interface RateLimit {
  count: number;
  periodMs: number;
  text: string;
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `3/1h`, `10/d`, `1/30m`, `5/600` (seconds). */
export function parseRateLimit(s: string): RateLimit {
  const m = /^\s*(\d+)\s*\/\s*(\d+(?:\.\d+)?)?\s*([smhd])?\s*$/.exec(s);
  if (!m || (m[2] === undefined && m[3] === undefined)) {
    throw new UsageError(`bad --rate-limit '${s}': expected N/PERIOD like 3/1h, 10/d, 1/30m or 5/600 (seconds)`);
  }
  const count = Number(m[1]);
  const periodMs = Number(m[2] ?? '1') * UNITS[m[3] ?? 's'];
  if (!(count >= 1 && count <= 1e6 && periodMs >= 1000 && periodMs <= 366 * UNITS.d)) {
    throw new UsageError(`bad --rate-limit '${s}': N must be 1-1000000 and PERIOD between 1s and 366d`);
  }
  return { count, periodMs: Math.round(periodMs), text: s.trim() };
}

export function freshState(): OopsState {
  return { armed: true, disarmedAt: null, sent: [] };
}

export type Decision = { send: true } | { send: false; reason: 'disarmed' | 'rate-limited'; detail: string; retryAt?: string };

/** Whether a dump may go out now. Pure. */
export function decide(st: OopsState, o: { soft: boolean; oneShot: boolean; rate?: RateLimit; now: number }): Decision {
  if (o.oneShot && !o.soft && !st.armed) {
    return { send: false, reason: 'disarmed', detail: `one-shot already fired${st.disarmedAt ? ` at ${st.disarmedAt}` : ''}; re-arm with --rearm` };
  }
  if (o.rate) {
    const recent = st.sent.filter((t) => t > o.now - o.rate!.periodMs).sort((a, b) => a - b);
    if (recent.length >= o.rate.count) {
      const retry = new Date(recent[recent.length - o.rate.count] + o.rate.periodMs).toISOString();
      return { send: false, reason: 'rate-limited', detail: `${recent.length} dumps in the last ${o.rate.text.split('/')[1]} (limit ${o.rate.text})`, retryAt: retry };
    }
  }
  return { send: true };
}

/** The state after a dump went out. Pure. */
export function recordSent(st: OopsState, o: { soft: boolean; oneShot: boolean; rate?: RateLimit; now: number }): OopsState {
  const keepMs = Math.max(o.rate?.periodMs ?? 0, 366 * UNITS.d);
  const sent = [...st.sent.filter((t) => t > o.now - keepMs), o.now].slice(-10000);
  if (o.oneShot && !o.soft) return { armed: false, disarmedAt: new Date(o.now).toISOString(), sent };
  return { ...st, sent };
}

export function parseState(text: string, file: string): OopsState {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new RuntimeError(`state file ${file} is not JSON: fix or remove it (removing re-arms)`);
  }
  const o = j as Partial<OopsState>;
  if (typeof o !== 'object' || o === null || typeof o.armed !== 'boolean' || !Array.isArray(o.sent)) {
    throw new RuntimeError(`state file ${file} is not a rawpoll oops state (want {"armed":bool,"sent":[…]}): fix or remove it`);
  }
  return { armed: o.armed, disarmedAt: typeof o.disarmedAt === 'string' ? o.disarmedAt : null, sent: o.sent.filter((t) => typeof t === 'number') };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The state file, locked for the lifetime of this object. */
export class OopsStateFile {
  private constructor(readonly file: string, private readonly lockPath: string) {}

  static async lock(file: string, waitMs = 10_000): Promise<OopsStateFile> {
    // The directory is the caller's (the CLI checks it exists): a state file never creates directories.
    const lockPath = `${file}.lock`;
    const t0 = Date.now();
    for (;;) {
      try {
        const fd = openSync(lockPath, 'wx', 0o644);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new OopsStateFile(file, lockPath);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new RuntimeError(`cannot create lock ${lockPath}: no directory ${path.dirname(path.resolve(file))} (it is not created)`);
        if (code !== 'EEXIST') throw new RuntimeError(`cannot create lock ${lockPath}: ${code ?? (e as Error).message}`);
      }
      let holder = NaN;
      try {
        holder = Number(readFileSync(lockPath, 'utf8').trim());
      } catch { /* vanished: retry */ }
      if (Number.isInteger(holder) && holder > 0 && !pidAlive(holder)) {
        try { unlinkSync(lockPath); } catch { /* someone else took it over */ }
        continue;
      }
      if (Date.now() - t0 > waitMs) throw new RuntimeError(`state file ${file} is locked by pid ${holder} (${lockPath}); retry later`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  read(): OopsState {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return freshState();
      throw new RuntimeError(`cannot read state file ${this.file}: ${(e as Error).message}`);
    }
    return parseState(text, this.file);
  }

  write(st: OopsState): void {
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(st) + '\n', { mode: 0o644 });
    const fd = openSync(tmp, 'r+');
    try { fsyncSync(fd); } finally { closeSync(fd); }
    renameSync(tmp, this.file);
  }

  unlock(): void {
    try { unlinkSync(this.lockPath); } catch { /* already gone */ }
  }
}
