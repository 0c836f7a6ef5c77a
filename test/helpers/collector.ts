/**
 * `rawpoll collect --json` running in a namespace, its event lines parsed as they come.
 */
import type { ChildProcess } from 'node:child_process';
import { RAWPOLL, waitFor, type Lab } from './lab.js';

export interface Collector {
  proc: ChildProcess;
  events: Record<string, unknown>[];
  stderr: () => string;
  wait: (pred: (e: Record<string, unknown>) => boolean, ms?: number) => Promise<Record<string, unknown> | undefined>;
  /** SIGINT, then the exit code. */
  stop: () => Promise<number | null>;
}

export async function startCollector(lab: Lab, ns: string, dir: string, extra: string[] = ['--oops', '2004']): Promise<Collector> {
  const proc = lab.spawn(ns, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--json', ...extra]);
  const events: Record<string, unknown>[] = [];
  let buf = '';
  let err = '';
  proc.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  const wait = async (pred: (e: Record<string, unknown>) => boolean, ms = 15000) => {
    await waitFor(() => events.some(pred), ms);
    return events.find(pred);
  };
  const ok = await wait((e) => e.event === 'listening', 10000);
  if (!ok) throw new Error(`collector did not start: ${err}`);
  return {
    proc, events, stderr: () => err, wait,
    stop: async () => {
      proc.kill('SIGINT');
      return exited;
    },
  };
}
