/**
 * `rawpoll sink ARGS` running in a namespace: resolves once it says it is ready ('listening on' unless told, e.g.
 * 'serving trials on' for --serve); `output()` waits for it to exit 0 and gives its stdout. `wrap` goes before the
 * command (e.g. ['env', 'LD_PRELOAD=…']).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { RAWPOLL, waitFor, type Lab } from './lab.js';

export interface RunningSink {
  proc: ChildProcess;
  /** stdout and stderr so far. */
  out: () => string;
  err: () => string;
  output: () => Promise<string>;
}

export async function startSink(lab: Lab, ns: string, args: string[], opts: { ready?: string; wrap?: string[] } = {}): Promise<RunningSink> {
  const ready = opts.ready ?? 'listening on';
  const proc = lab.spawn(ns, [...(opts.wrap ?? []), process.execPath, RAWPOLL, 'sink', ...args]);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => proc.on('close', (code) => res(code)));
  assert.ok(await waitFor(() => err.includes(ready), 10000), `sink did not start: ${err}`);
  return {
    proc,
    out: () => out,
    err: () => err,
    output: async () => {
      const code = await exited;
      assert.equal(code, 0, `sink exited ${code}: ${err}`);
      return out;
    },
  };
}
