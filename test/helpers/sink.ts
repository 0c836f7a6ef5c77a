/**
 * `rawpoll sink ARGS` running in a namespace: resolves once it listens; `output()` waits for it to exit 0 and gives
 * its stdout.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { RAWPOLL, waitFor, type Lab } from './lab.js';

export interface RunningSink {
  proc: ChildProcess;
  err: () => string;
  output: () => Promise<string>;
}

export async function startSink(lab: Lab, ns: string, args: string[]): Promise<RunningSink> {
  const proc = lab.spawn(ns, [process.execPath, RAWPOLL, 'sink', ...args]);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => proc.on('close', (code) => res(code)));
  assert.ok(await waitFor(() => err.includes('listening on'), 10000), `sink did not start: ${err}`);
  return {
    proc,
    err: () => err,
    output: async () => {
      const code = await exited;
      assert.equal(code, 0, `sink exited ${code}: ${err}`);
      return out;
    },
  };
}
