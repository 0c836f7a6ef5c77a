/**
 * Processes in the bench's namespaces: started with `ip netns exec`, their output kept, waited for by pattern, stopped
 * once they have drained. Shared by the capture and receive sections.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

export interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  ended: () => boolean;
}

/** `ip netns exec NS ARGS…` (it execs the command, so the child's pid is the command's). */
export function start(ns: string, args: string[]): Proc {
  const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  let done = false;
  const exited = new Promise<number | null>((res) => child.on('close', (code, sig) => {
    done = true;
    res(code ?? (sig ? 128 : null));
  }));
  return { child, stdout: () => Buffer.concat(out).toString(), stderr: () => Buffer.concat(err).toString(), exited, ended: () => done };
}

/** Whether `re` shows up on the process's stderr or stdout within ms (false at once if it ended). */
export async function ready(p: Proc, re: RegExp, ms = 15000): Promise<boolean> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (re.test(p.stderr()) || re.test(p.stdout())) return true;
    if (p.ended()) return false;
    await sleep(20);
  }
  return false;
}

export async function exitWithin(p: Proc, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.exited.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

/** utime + stime (clock ticks) of a process, -1 once it is gone. */
export function cpuTicks(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return -1;
  }
}

/** SIGINT to a receiver that does not end by itself, once it has drained: at least minMs, then its CPU time still for 300 ms. */
export async function interruptWhenIdle(p: Proc, minMs: number): Promise<void> {
  await sleep(minMs);
  const pid = p.child.pid!;
  let prev = cpuTicks(pid);
  for (let i = 0; i < 100 && !p.ended(); i++) {
    await sleep(300);
    const now = cpuTicks(pid);
    if (now === prev) break;
    prev = now;
  }
  if (!p.ended()) p.child.kill('SIGINT');
}

/**
 * A bench script's command line: `--help` prints `usage` and exits 0; a flag not in `flags` (each taking a value,
 * unless listed in `switches`) is refused before anything starts; the bench needs root (it creates namespaces).
 * Returns the numeric flag reader.
 */
export function benchArgs(usage: string, flags: string[], switches: string[] = []): (name: string, dflt: number) => number {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage.trim() + '\n');
    process.exit(0);
  }
  for (let i = 0; i < argv.length; i++) {
    if (switches.includes(argv[i])) continue;
    if (!flags.includes(argv[i]) || i + 1 >= argv.length) {
      process.stderr.write(`bad argument '${argv[i]}'${flags.includes(argv[i]) ? ': it needs a value' : ''}\n${usage.trim()}\n`);
      process.exit(2);
    }
    i++;
  }
  if (process.getuid && process.getuid() !== 0) {
    process.stderr.write('the bench creates network namespaces: run it as root\n');
    process.exit(1);
  }
  return (name, dflt) => {
    const i = argv.indexOf(name);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
}
