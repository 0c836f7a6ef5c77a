/**
 * `--hook PROG`: a program a receiver runs after each dump (netdump-server) or complete oops report (collect), the way
 * FreeBSD netdumpd runs its `-i script` (usr.sbin/netdumpd/netdumpd.c, exec_handler: fork + execl of the script with
 * reason, client address, hostname, info file and core file; reason "success", "timeout" or "error").
 *
 * Unlike netdumpd's fork-and-forget, a hook here is bounded and accounted: it is spawned without waiting (the receive
 * path never blocks on it), at most `maxConcurrent` run at once (one more is skipped, and that is said), each gets
 * `timeoutMs` and is then killed with its whole process group (a shell script's `sleep` too), and how each ended is
 * reported as one event. Its standard output and error go to our standard error, never into the receiver's event
 * stream on stdout. No shell is involved: the arguments reach the program as they are, whatever a client put in them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsc, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { UsageError } from '../errors.js';

export const HOOK_DEFAULTS = {
  /** A hook's time limit (--hook-timeout), seconds. */
  timeoutSec: 60,
  /** Hooks running at once; a further one is skipped (a flood of dumps must not fork without bound). */
  maxConcurrent: 4,
};
/** The longest --hook-timeout taken, seconds (a day). */
export const HOOK_TIMEOUT_MAX_SEC = 86400;
/** After SIGTERM at the time limit, the group gets SIGKILL this much later if it is still there. */
const KILL_GRACE_MS = 2000;

/** How a hook ended: exited (code, 0 = ok), killed at its time limit, skipped (too many running), or not started. */
export interface HookEvent {
  event: 'hook';
  prog: string;
  args: string[];
  result: 'ok' | 'failed' | 'timeout' | 'skipped' | 'error';
  /** Exit code (ok/failed), or the signal that ended it. */
  code?: number | null;
  signal?: string | null;
  /** Milliseconds it ran. */
  ms?: number;
  /** skipped: how many were running; error: why it could not start. */
  running?: number;
  error?: string;
}

export interface HookRunnerOptions {
  /** The program: a path (checked with checkHookProgram). */
  prog: string;
  timeoutMs?: number;
  maxConcurrent?: number;
  onEvent: (e: HookEvent) => void;
}

/**
 * --hook PROG must name an executable regular file now, at start-up: a typo found at the first crash would lose the
 * one event the hook exists for. Returns the absolute path (the hook may be spawned after a chdir). UsageError (2).
 */
export function checkHookProgram(prog: string, what = '--hook'): string {
  const abs = resolvePath(prog);
  let st;
  try {
    st = statSync(abs);
  } catch (e) {
    throw new UsageError(`bad ${what} '${prog}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message} (give the path of an executable program)`);
  }
  if (!st.isFile()) throw new UsageError(`bad ${what} '${prog}': not a regular file (give the path of an executable program)`);
  try {
    accessSync(abs, fsc.X_OK);
  } catch {
    throw new UsageError(`bad ${what} '${prog}': not executable (chmod +x it, or give an executable program)`);
  }
  return abs;
}

/** --hook-timeout S: seconds, 0 < S <= HOOK_TIMEOUT_MAX_SEC (fractions allowed). UsageError naming the value. */
export function parseHookTimeout(v: string, what = '--hook-timeout'): number {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(String(v)) ? Number(v) : NaN;
  if (!(n > 0 && n <= HOOK_TIMEOUT_MAX_SEC)) {
    throw new UsageError(`bad ${what} '${v}': expected seconds, more than 0, at most ${HOOK_TIMEOUT_MAX_SEC}`);
  }
  return n;
}

export class HookRunner {
  readonly prog: string;
  readonly timeoutMs: number;
  readonly maxConcurrent: number;
  /** How hooks ended so far, by result (for metrics and the summary). */
  readonly counts: Record<HookEvent['result'], number> = { ok: 0, failed: 0, timeout: 0, skipped: 0, error: 0 };
  private readonly live = new Map<ChildProcess, Promise<void>>();
  private readonly onEvent: (e: HookEvent) => void;

  constructor(o: HookRunnerOptions) {
    this.prog = o.prog;
    this.timeoutMs = o.timeoutMs ?? HOOK_DEFAULTS.timeoutSec * 1000;
    this.maxConcurrent = o.maxConcurrent ?? HOOK_DEFAULTS.maxConcurrent;
    this.onEvent = o.onEvent;
  }

  /** Hooks running now. */
  get running(): number {
    return this.live.size;
  }

  private report(e: HookEvent): void {
    this.counts[e.result]++;
    try {
      this.onEvent(e);
    } catch {
      /* a logger's failure is not the hook's */
    }
  }

  /** Starts the hook with `args` and returns at once; how it ends is reported through onEvent. */
  run(args: string[], env: Record<string, string> = {}): void {
    const base = { event: 'hook' as const, prog: this.prog, args };
    if (this.live.size >= this.maxConcurrent) {
      this.report({ ...base, result: 'skipped', running: this.live.size });
      return;
    }
    const t0 = Date.now();
    let child: ChildProcess;
    try {
      // detached: its own process group, so the time limit kills what the hook started too; stdout to our stderr.
      child = spawn(this.prog, args, { stdio: ['ignore', 2, 2], detached: true, env: { ...process.env, ...env } });
    } catch (e) {
      this.report({ ...base, result: 'error', error: (e as Error).message });
      return;
    }
    let timedOut = false;
    let killTimer: NodeJS.Timeout | null = null;
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig);
      } catch {
        /* the group is gone */
      }
    };
    const limit = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      killTimer = setTimeout(() => kill('SIGKILL'), KILL_GRACE_MS);
    }, this.timeoutMs);
    const done = new Promise<void>((res) => {
      let settled = false;
      // A program that cannot be started may say so with 'error' and then 'exit' too: one report, one count.
      const finish = (e: HookEvent) => {
        if (settled) return;
        settled = true;
        clearTimeout(limit);
        if (killTimer) clearTimeout(killTimer);
        this.live.delete(child);
        this.report(e);
        res();
      };
      child.once('error', (err) => finish({ ...base, result: 'error', error: err.message, ms: Date.now() - t0 }));
      child.once('exit', (code, signal) => {
        // What the hook left in its group is ended with it at the time limit; on a normal exit it is the hook's own.
        if (timedOut) kill('SIGKILL');
        finish({
          ...base, result: timedOut ? 'timeout' : code === 0 ? 'ok' : 'failed', code, signal, ms: Date.now() - t0,
        });
      });
    });
    this.live.set(child, done);
  }

  /** Waits for the hooks still running (each ends by its time limit at the latest). */
  async close(): Promise<void> {
    await Promise.all([...this.live.values()]);
  }
}

/** One line for a text log: `hook PROG result code=… ms=… args=…`. */
export function formatHookEvent(e: HookEvent): string {
  const how = e.result === 'skipped' ? `skipped: ${e.running} hooks running (the most at once)`
    : e.result === 'error' ? `could not run: ${e.error}`
    : e.result === 'timeout' ? `killed after its time limit (${e.ms} ms)`
    : e.signal ? `ended by ${e.signal} after ${e.ms} ms` : `exited ${e.code} after ${e.ms} ms`;
  return `Hook ${e.prog} ${e.args.map((a) => JSON.stringify(a)).join(' ')}: ${how}`;
}
