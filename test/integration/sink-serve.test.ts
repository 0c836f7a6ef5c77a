/**
 * `rawpoll sink --serve` on a real veth pair in namespaces we create and always remove: the trial server runs in B;
 * the tester's end (exp/control.ts ControlClient, and raw sockets for hostile messages) runs in a small node driver
 * in A, next to `rawpoll blast`. A trial opened over the control channel counts exactly what blast sent; hostile
 * messages each get an error reply and the server goes on serving real trials; --max-clients holds; SIGTERM closes
 * the open trials and exits 0.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { exitOf, labsForThisFile, must, rawpoll, rawpollAsync, ROOT, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { startSink, type RunningSink } from '../helpers/sink.js';

const { hosts } = labsForThisFile('rawpoll-sink-serve-');
const CONTROL = pathToFileURL(resolve(ROOT, 'dist', 'src', 'exp', 'control.js')).href;
const TOKEN = 'lab-s3cret';
const CONTROL_PORT = 5201;

/**
 * The driver, run in namespace A: one JSON command a line on stdin, one JSON answer a line on stdout. Named
 * ControlClients persist between commands (a tester holds its connection across trials); `raw` opens a plain socket,
 * writes lines (and optionally `big` bytes of 'a' without a newline), and returns the reply lines and whether the
 * server closed the connection.
 */
const DRIVER = `
import net from 'node:net';
import readline from 'node:readline';
const { ControlClient } = await import(process.argv[1]);
const [host, port] = [process.argv[2], Number(process.argv[3])];
const clients = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
async function raw(c) {
  const s = net.connect(port, host);
  s.on('error', () => {});
  let buf = '', closed = false;
  s.on('data', (d) => (buf += d));
  s.on('close', () => (closed = true));
  await new Promise((res) => s.once('connect', res));
  for (const l of c.lines) s.write(l + '\\n');
  if (c.big) s.write(Buffer.alloc(c.big, 0x61));
  const t0 = Date.now();
  while (!closed && buf.split('\\n').length - 1 < c.n && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
  return { replies: buf.split('\\n').filter(Boolean).map((l) => JSON.parse(l)), closed };
}
for await (const line of readline.createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  try {
    let result;
    if (c.do === 'connect') {
      const cl = await ControlClient.connect(host, port, { token: c.token });
      clients.set(c.name, cl);
      result = cl.hello;
    } else if (c.do === 'raw') {
      result = await raw(c);
    } else {
      result = (await clients.get(c.name)[c.do](c.arg)) ?? null;
    }
    out({ seq: c.seq, ok: true, result });
  } catch (e) {
    out({ seq: c.seq, ok: false, error: e.message });
  }
}
`;

interface Answer { ok: boolean; result?: any; error?: string }

class Driver {
  private seq = 0;
  private out = '';
  private err = '';
  private readonly waiting = new Map<number, (a: Answer) => void>();
  readonly proc: ChildProcess;

  constructor(L: TwoHostLab) {
    // Not lab.spawn: the driver reads commands on stdin. Lab.destroy() kills whatever still runs in A all the same.
    this.proc = spawn('ip', ['netns', 'exec', L.a, process.execPath, '--input-type=module', '-e', DRIVER, CONTROL, L.ipB, String(CONTROL_PORT)],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d) => (this.err += d));
    this.proc.stdout!.on('data', (d) => {
      this.out += d;
      let nl: number;
      while ((nl = this.out.indexOf('\n')) >= 0) {
        const a = JSON.parse(this.out.slice(0, nl)) as Answer & { seq: number };
        this.out = this.out.slice(nl + 1);
        this.waiting.get(a.seq)?.(a);
        this.waiting.delete(a.seq);
      }
    });
  }

  do(cmd: Record<string, unknown>, ms = 30000): Promise<Answer> {
    const seq = ++this.seq;
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`driver: no answer to ${JSON.stringify(cmd).slice(0, 80)} in ${ms} ms; stderr: ${this.err}`)), ms);
      this.waiting.set(seq, (a) => {
        clearTimeout(t);
        res(a);
      });
      this.proc.stdin!.write(JSON.stringify({ ...cmd, seq }) + '\n');
    });
  }

  /** A call that must succeed. */
  async ok(cmd: Record<string, unknown>): Promise<any> {
    const a = await this.do(cmd);
    assert.ok(a.ok, `${JSON.stringify(cmd).slice(0, 100)} failed: ${a.error}`);
    return a.result;
  }

  /** Raw lines on a connection of its own: the replies and whether the server closed it. */
  async raw(lines: string[], n: number, big?: number): Promise<{ replies: { id: unknown; ok: boolean; error?: string }[]; closed: boolean }> {
    return this.ok({ do: 'raw', lines, n, big });
  }

  stop(): void {
    this.proc.stdin!.end();
  }
}

interface Server extends RunningSink {
  events: () => Record<string, any>[];
}

/** `rawpoll sink --serve …` in B; resolves once it says where it serves. */
async function startServer(L: TwoHostLab, args: string[]): Promise<Server> {
  const s = await startSink(L.lab, L.b, ['--json', ...args], { ready: 'serving trials on' });
  return { ...s, events: () => s.out().split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

const hello = (token = TOKEN) => JSON.stringify({ op: 'hello', id: 1, version: 1, token });

async function blast(L: TwoHostLab, count: number): Promise<void> {
  const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', String(count), '--rate', '50kpps', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).sent, count);
}

/** Waits (polling status, as a tester does) until the trial has counted `n`, then closes it and returns the reply. */
async function drainAndClose(d: Driver, name: string, trial: number, n: number): Promise<{ report: any; histograms: any }> {
  for (let i = 0; i < 100; i++) {
    const s = await d.ok({ do: 'status', name, arg: trial });
    if (s.received >= n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return d.ok({ do: 'close', name, arg: trial });
}

describe('rawpoll sink --serve: trials over a control channel, between two namespaces', () => {
  let L: TwoHostLab;
  let server: Server;
  let d: Driver;

  before(async () => {
    L = hosts();
    server = await startServer(L, ['--serve', `${L.ipB}:${CONTROL_PORT}`, '--token', TOKEN, '--max-clients', '3']);
    d = new Driver(L);
  });
  after(() => d?.stop());

  test('it listens only where told, and says so', () => {
    assert.match(server.err(), new RegExp(`rawpoll sink: serving trials on ${L.ipB.replace(/\./g, '\\.')}:${CONTROL_PORT} \\(socket; clock: kernel`));
    const listening = must('ip', ['netns', 'exec', L.b, 'ss', '-ltnH']).trim().split('\n').map((l) => l.trim().split(/\s+/)[3]);
    assert.deepEqual(listening, [`${L.ipB}:${CONTROL_PORT}`]);
  });

  test('blast into a trial opened over the control channel: the report counts exactly what was sent; the same port again', async () => {
    const h = await d.ok({ do: 'connect', name: 'c1', token: TOKEN });
    assert.deepEqual({ ...h, clock: '' }, { server: 'rawpoll sink', version: 1, mode: 'socket', clock: '' });
    const t1 = await d.ok({ do: 'open', name: 'c1', arg: { port: 9, expect: 5000 } });
    await blast(L, 5000);
    const r1 = await drainAndClose(d, 'c1', t1, 5000);
    assert.equal(r1.report.reason, 'closed');
    assert.equal(r1.report.mode, 'socket');
    assert.equal(r1.report.totals.received, 5000);
    assert.equal(r1.report.totals.unique, 5000);
    assert.equal(r1.report.totals.lost, 0);
    assert.deepEqual(r1.report.loss, { seqGaps: 0, own: 0, network: 0, exact: true });
    assert.equal(r1.report.flows.length, 1);
    assert.equal(r1.report.flows[0].dst, `${L.ipB}:9`);
    assert.ok(r1.histograms.latency, 'the latency histogram comes with the report');
    // The first trial closed: its port takes a second one, which counts from zero.
    const t2 = await d.ok({ do: 'open', name: 'c1', arg: { port: 9, expect: 3000 } });
    assert.notEqual(t2, t1);
    await blast(L, 3000);
    const r2 = await drainAndClose(d, 'c1', t2, 3000);
    assert.equal(r2.report.totals.received, 3000);
    assert.equal(r2.report.totals.lost, 0);
    await waitFor(() => server.events().filter((e) => e.event.startsWith('trial-')).length >= 4, 2000);
    const ev = server.events().filter((e) => e.event.startsWith('trial-')).map((e) => `${e.event} ${e.trial} ${e.reason ?? ''}`.trim());
    assert.deepEqual(ev, [`trial-opened ${t1}`, `trial-closed ${t1} closed`, `trial-opened ${t2}`, `trial-closed ${t2} closed`]);
  });

  test('hostile messages each get an error reply; the server then still counts a real trial exactly', async () => {
    // c1 holds a trial while the others misbehave; nobody else may see or close it.
    const t = await d.ok({ do: 'open', name: 'c1', arg: { port: 9, expect: 2000 } });
    const garbage = await d.raw(['garbage', '{"op":"status","id":2,"trial":1}'], 2);
    assert.match(garbage.replies[0].error!, /^bad JSON/);
    assert.equal(garbage.replies[0].id, null);
    assert.match(garbage.replies[1].error!, /^status before hello/);
    assert.equal(garbage.closed, false, 'bad JSON costs an error reply, not the connection');

    for (const lines of [[hello('wrong')], [JSON.stringify({ op: 'hello', id: 1, version: 1 })]]) {
      const bad = await d.raw([...lines, JSON.stringify({ op: 'close', id: 2, trial: t })], 2);
      assert.deepEqual(bad.replies, [{ id: 1, ok: false, error: 'bad token' }]);
      assert.equal(bad.closed, true);
    }
    assert.match((await d.do({ do: 'connect', name: 'x', token: 'nope' })).error!, /hello refused: bad token/);

    const huge = await d.raw([hello()], 2, 1 << 20);
    assert.equal(huge.replies[0].ok, true);
    assert.match(huge.replies[1].error!, /^request line longer than 65536 bytes/);
    assert.equal(huge.closed, true);

    const bad = await d.raw([hello(),
      '{"op":"frob","id":2}',
      '{"op":"open","id":3,"port":0}',
      '{"op":"open","id":4,"port":70000}',
      '{"op":"open","id":5,"port":9}',
      `{"op":"close","id":6,"trial":${t}}`,
      `{"op":"status","id":7,"trial":${t}}`,
      '{"op":"open","id":8,"port":1e400,"expect":-1}',
      '[]',
    ], 9);
    const errors = bad.replies.slice(1).map((r) => `${r.id} ${r.error}`);
    assert.deepEqual(errors, [
      '2 unknown op "frob": expected one of hello, open, status, close, bye',
      '3 bad port 0 in open: expected an integer 1-65535',
      '4 bad port 70000 in open: expected an integer 1-65535',
      `5 UDP port 9 is already counted by trial ${t} of another client: close it first or pick another port`,
      `6 no trial ${t} on this connection: it has none open`,
      `7 no trial ${t} on this connection: it has none open`,
      '8 bad port Infinity (a number out of range) in open: expected an integer 1-65535',
      'null expected a JSON object like {"op":"hello","id":1,"version":1}, got an array',
    ]);
    assert.equal(bad.closed, false);

    await blast(L, 2000);
    const r = await drainAndClose(d, 'c1', t, 2000);
    assert.equal(r.report.totals.received, 2000);
    assert.equal(r.report.totals.lost, 0);
    assert.equal(server.proc.exitCode, null, 'the server is still running');
  });

  test('--max-clients 3: a fourth is told the server is busy; a slot frees when one leaves', async () => {
    await d.ok({ do: 'connect', name: 'c2', token: TOKEN });
    await d.ok({ do: 'connect', name: 'c3', token: TOKEN });
    const fourth = await d.do({ do: 'connect', name: 'c4', token: TOKEN });
    assert.equal(fourth.ok, false);
    assert.match(fourth.error!, /server busy: 3 clients connected \(--max-clients 3\); try again later/);
    // The server's log line travels through a pipe of its own: it may come after the client's answer.
    assert.ok(await waitFor(() => /refused [\d.]+:\d+: server busy/.test(server.err()), 2000), server.err());
    await d.ok({ do: 'end', name: 'c3' });
    await waitFor(() => false, 200);
    await d.ok({ do: 'connect', name: 'c4', token: TOKEN });
    const t = await d.ok({ do: 'open', name: 'c4', arg: { port: 9 } });
    await blast(L, 1000);
    assert.equal((await drainAndClose(d, 'c4', t, 1000)).report.totals.received, 1000);
    await d.ok({ do: 'end', name: 'c4' });
    await d.ok({ do: 'end', name: 'c2' });
  });

  test('SIGTERM: the open trial is closed, the server exits 0', async () => {
    const t = await d.ok({ do: 'open', name: 'c1', arg: { port: 9 } });
    server.proc.kill('SIGTERM');
    await exitOf(server.proc);
    await server.output(); // exits 0
    const [last, stop] = server.events().slice(-2);
    assert.deepEqual([last.event, last.trial, last.reason], ['trial-closed', t, 'server-stopped']);
    assert.deepEqual([stop.event, stop.interrupted, stop.trials], ['stopped', 'SIGTERM', 5]);
    assert.match(server.err(), /rawpoll sink: stopped serving \(SIGTERM\): 5 trials served/);
    const after = await d.do({ do: 'status', name: 'c1', arg: t });
    assert.match(after.error!, /status: the connection closed \(server stopping: trials closed\)/);
  });
});

describe('rawpoll sink --serve --capture, and usage', () => {
  test('a capture-mode server: trials counted by libpcap on the interface', async () => {
    const L = hosts();
    const server = await startServer(L, ['--serve', String(CONTROL_PORT), '--capture', '-i', L.ifB]);
    assert.match(server.err(), new RegExp(`serving trials on (0\\.0\\.0\\.0|\\[::\\]):${CONTROL_PORT} \\(capture on ${L.ifB}; clock: kernel`));
    const d = new Driver(L);
    try {
      const h = await d.ok({ do: 'connect', name: 'c', token: undefined });
      assert.equal(h.mode, 'capture');
      const t = await d.ok({ do: 'open', name: 'c', arg: { port: 9, expect: 2000 } });
      await blast(L, 2000);
      const r = await drainAndClose(d, 'c', t, 2000);
      assert.equal(r.report.mode, 'capture');
      assert.equal(r.report.iface, L.ifB);
      assert.equal(r.report.totals.received, 2000);
      assert.equal(r.report.totals.lost, 0);
      await d.ok({ do: 'end', name: 'c' });
    } finally {
      d.stop();
    }
    server.proc.kill('SIGINT');
    await exitOf(server.proc);
    await server.output(); // exits 0
  });

  test('--serve with a single run\'s flag is bad usage (exit 2) naming the conflict, before anything listens', () => {
    const L = hosts();
    for (const [flag, v] of [['--count', '10'], ['--duration', '5'], ['--idle', '1'], ['--interval', '1'], ['--json-stream', null], ['--histogram', '/tmp/x']]) {
      const r = rawpoll(L.b, ['sink', '--serve', String(CONTROL_PORT), flag!, ...(v !== null ? [v] : [])]);
      assert.equal(r.code, 2, `${flag}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^rawpoll: --serve and ${flag} conflict: .*; drop ${flag}\\n$`));
    }
    const noServe = rawpoll(L.b, ['sink', '--token', 'x']);
    assert.equal(noServe.code, 2);
    assert.match(noServe.stderr, /--token is a --serve flag: add --serve \[IP:\]PORT, or drop --token/);
    assert.equal(must('ip', ['netns', 'exec', L.b, 'ss', '-ltnH']).trim(), '', 'nothing listened');
  });
});
