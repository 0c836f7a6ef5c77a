/**
 * The trial server (rx/serve.ts) and its client (exp/control.ts) over loopback only, no root: a TrialServer on
 * 127.0.0.1 with trials bound to 127.0.0.1, pktgen datagrams from a node dgram socket. The bounds (trials, clients,
 * a trial's life, idle and hello time, line length), the token, and what a client's going away closes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { TrialServer, type ServeEvent, type ServeLimits } from '../../src/rx/serve.js';
import { ControlClient, ControlError } from '../../src/exp/control.js';
import { freeUdpPort, stampedPktgen } from '../helpers/pktgen.js';

const LO = 0x7f000001;
const servers: TrialServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
});

const pg = stampedPktgen;


async function sendSeqs(port: number, seqs: number[]): Promise<void> {
  const s = dgram.createSocket('udp4');
  for (const q of seqs) await new Promise<void>((res, rej) => s.send(pg(q), port, '127.0.0.1', (e) => (e ? rej(e) : res())));
  s.close();
}

async function serve(o: { token?: string; limits?: Partial<ServeLimits> } = {}): Promise<{ server: TrialServer; port: number; events: ServeEvent[] }> {
  const events: ServeEvent[] = [];
  const server = new TrialServer({ host: '127.0.0.1', port: 0, token: o.token, trial: { bind: LO }, limits: o.limits, onEvent: (e) => events.push(e) });
  servers.push(server);
  const a = await server.start();
  assert.equal(a.address, '127.0.0.1');
  return { server, port: a.port, events };
}

/** A raw control connection: write lines, collect reply lines until `n` arrived or the server closed. */
async function raw(port: number, send: (string | Buffer)[], n: number, ms = 3000): Promise<{ replies: Record<string, unknown>[]; closed: boolean }> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  let buf = '';
  let closed = false;
  s.on('data', (d) => (buf += d));
  s.on('close', () => (closed = true));
  await new Promise<void>((res) => s.once('connect', () => res()));
  for (const l of send) s.write(l);
  const t0 = Date.now();
  while (!closed && buf.split('\n').length - 1 < n && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 10));
  if (n > 0 && !closed) await new Promise((r) => setTimeout(r, 50)); // anything more it would say
  s.destroy();
  return { replies: buf.split('\n').filter(Boolean).map((l) => JSON.parse(l)), closed };
}

const waitUntil = async (pred: () => boolean, ms = 3000) => {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
};

test('a trial end to end: hello, open, status, close with the report and histograms; the same port again after', async () => {
  const { server, port, events } = await serve({ token: 'tok' });
  const c = await ControlClient.connect('127.0.0.1', port, { token: 'tok' });
  assert.equal(c.hello.server, 'rawpoll sink');
  assert.equal(c.hello.version, 1);
  assert.equal(c.hello.mode, 'socket');
  assert.match(c.hello.clock, /^kernel/);
  const udp = await freeUdpPort();
  const trial = await c.open({ port: udp, expect: 100 });
  assert.equal(server.openTrials, 1);
  await sendSeqs(udp, [...Array(100).keys()].map((i) => i + 1).filter((q) => q !== 50));
  assert.ok(await (async () => {
    for (let i = 0; i < 200; i++) {
      if ((await c.status(trial)).received === 99) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  })(), 'status counts what arrived');
  const st = await c.status(trial);
  assert.equal(st.state, 'running');
  assert.equal(st.lost, 1);
  const { report, histograms } = await c.close(trial);
  assert.equal(report.reason, 'closed');
  assert.equal(report.port, udp);
  assert.equal(report.totals.received, 99);
  assert.equal(report.totals.lost, 1);
  assert.equal(report.flows.length, 1);
  assert.equal(histograms.format, 'rawpoll-histograms/1');
  assert.ok(histograms.latency, 'the latency histogram, encoded');
  assert.equal(server.openTrials, 0);
  await assert.rejects(c.status(trial), (e: unknown) => e instanceof ControlError && /no trial \d+ on this connection: it has none open/.test(e.message));
  // The port is free again: a second trial on it counts from zero.
  const t2 = await c.open({ port: udp });
  assert.notEqual(t2, trial);
  await sendSeqs(udp, [1, 2, 3]);
  await waitUntil(() => false, 100);
  assert.equal((await c.close(t2)).report.totals.received, 3);
  await c.end();
  assert.ok(c.closed);
  const kinds = events.filter((e) => e.event.startsWith('trial')).map((e) => `${e.event} ${(e as { trial: number }).trial}`);
  assert.deepEqual(kinds, [`trial-opened ${trial}`, `trial-closed ${trial}`, `trial-opened ${t2}`, `trial-closed ${t2}`]);
});

test('port in use by another trial or by a socket, and --max-trials: error replies; the server goes on', async () => {
  const { server, port } = await serve({ limits: { maxTrials: 2 } });
  const c = await ControlClient.connect('127.0.0.1', port);
  const d = await ControlClient.connect('127.0.0.1', port);
  const u1 = await freeUdpPort();
  const t1 = await c.open({ port: u1 });
  await assert.rejects(c.open({ port: u1 }), (e: unknown) => e instanceof ControlError && e.serverError === `UDP port ${u1} is already counted by trial ${t1}: close it first or pick another port`);
  await assert.rejects(d.open({ port: u1 }), /already counted by trial \d+ of another client/);
  const busy = dgram.createSocket('udp4');
  const u2 = await freeUdpPort();
  await new Promise<void>((res) => busy.bind(u2, '127.0.0.1', () => res()));
  try {
    await assert.rejects(d.open({ port: u2 }), (e: unknown) => e instanceof ControlError && /open refused: UDP 127\.0\.0\.1:\d+ is already in use by another socket/.test(e.message));
  } finally {
    busy.close();
  }
  const t2 = await d.open({ port: u2 });
  await assert.rejects(c.open({ port: await freeUdpPort() }), /2 trials open, the most this server takes at once \(--max-trials 2\): close one first/);
  // Another client's trial is not yours to see or close.
  await assert.rejects(c.close(t2), new RegExp(`no trial ${t2} on this connection: its trials are ${t1}`));
  await assert.rejects(c.status(t2), /no trial/);
  assert.equal(server.openTrials, 2);
  await d.close(t2);
  await c.close(t1);
  await c.end();
  await d.end();
});

test('a trial outlives --max-trial-seconds: it stops counting, status says so, close still gets its report', async () => {
  const { port, events } = await serve({ limits: { maxTrialSeconds: 0.2 } });
  const c = await ControlClient.connect('127.0.0.1', port);
  const udp = await freeUdpPort();
  const t = await c.open({ port: udp });
  await sendSeqs(udp, [1, 2]);
  assert.ok(await waitUntil(() => events.some((e) => e.event === 'trial-closed')), 'closed by its life running out');
  const st = await c.status(t);
  assert.equal(st.state, 'ended');
  assert.equal(st.reason, 'max-trial-seconds');
  assert.equal(st.received, 2);
  // Its port is free for a new trial while the old report waits.
  const t2 = await c.open({ port: udp });
  const r = await c.close(t);
  assert.equal(r.report.reason, 'max-trial-seconds');
  assert.equal(r.report.totals.received, 2);
  await c.close(t2);
  await c.end();
});

test('a client that goes away (bye, disconnect, idle) takes its trials with it; others are untouched', async () => {
  const { server, port, events } = await serve({ limits: { idleSeconds: 0.5 } });
  const keep = await ControlClient.connect('127.0.0.1', port);
  const kept = await keep.open({ port: await freeUdpPort() });
  const a = await ControlClient.connect('127.0.0.1', port);
  await a.open({ port: await freeUdpPort() });
  await a.end();
  assert.equal(server.openTrials, 1);
  const b = await ControlClient.connect('127.0.0.1', port);
  await b.open({ port: await freeUdpPort() });
  b.destroy();
  assert.ok(await waitUntil(() => server.openTrials === 1), 'disconnect closes its trial');
  const idle = await ControlClient.connect('127.0.0.1', port);
  await idle.open({ port: await freeUdpPort() });
  // keep polls meanwhile, so only `idle` times out.
  for (let i = 0; i < 10 && !idle.closed; i++) {
    await keep.status(kept);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(await waitUntil(() => idle.closed, 2000), 'the idle client was closed');
  await assert.rejects(idle.status(1), /the connection closed \(no request for 0\.5 s \(idle timeout\): closing\)/);
  assert.equal(server.openTrials, 1);
  const reasons = events.flatMap((e) => (e.event === 'trial-closed' ? [e.reason] : []));
  assert.deepEqual(reasons.sort(), ['bye', 'client-gone', 'client-gone']);
  assert.equal((await keep.status(kept)).state, 'running');
  await keep.end();
  assert.equal(server.openTrials, 0);
});

test('hello first, the token, and 10 s (here 0.3 s) to say it', async () => {
  const { port } = await serve({ token: 's3cret', limits: { helloSeconds: 0.3 } });
  const before = await raw(port, ['{"op":"open","id":1,"port":9}\n', '{"op":"hello","id":2,"version":2,"token":"s3cret"}\n'], 2);
  assert.match(String(before.replies[0].error), /^open before hello: the first request must be \{"op":"hello"/);
  assert.equal(before.replies[1].error, 'unsupported version 2: this server speaks version 1');
  assert.equal(before.closed, false);
  await assert.rejects(ControlClient.connect('127.0.0.1', port, { token: 'wrong' }), (e: unknown) => e instanceof ControlError && e.serverError === 'bad token' && /hello refused: bad token/.test(e.message));
  await assert.rejects(ControlClient.connect('127.0.0.1', port), /hello refused: bad token/);
  const bad = await raw(port, ['{"op":"hello","id":1,"version":1,"token":"s3cre"}\n', '{"op":"hello","id":2,"version":1,"token":"s3cret"}\n'], 2);
  assert.deepEqual(bad.replies, [{ id: 1, ok: false, error: 'bad token' }], 'after a bad token nothing more is answered');
  assert.equal(bad.closed, true);
  const silent = await raw(port, [], 1, 2000);
  assert.deepEqual(silent.replies, [{ id: null, ok: false, error: 'no hello within 0.3 s: closing' }]);
  assert.equal(silent.closed, true);
  const c = await ControlClient.connect('127.0.0.1', port, { token: 's3cret' });
  await c.end();
});

test('--max-clients: one more is told the server is busy; a slot frees when a client leaves', async () => {
  const { server, port } = await serve({ limits: { maxClients: 2 } });
  const a = await ControlClient.connect('127.0.0.1', port);
  const b = await ControlClient.connect('127.0.0.1', port);
  await assert.rejects(ControlClient.connect('127.0.0.1', port), (e: unknown) => e instanceof ControlError &&
    /hello: the connection closed \(server busy: 2 clients connected \(--max-clients 2\); try again later\)/.test(e.message));
  await b.end();
  assert.ok(await waitUntil(() => server.clients === 1));
  const c = await ControlClient.connect('127.0.0.1', port);
  await c.end();
  await a.end();
});

test('a 1 MiB line: an error reply and that connection closed; the other clients and their trials carry on', async () => {
  const { server, port } = await serve();
  const c = await ControlClient.connect('127.0.0.1', port);
  const udp = await freeUdpPort();
  const t = await c.open({ port: udp });
  const huge = await raw(port, ['{"op":"hello","id":1,"version":1}\n', Buffer.alloc(1 << 20, 0x61), '\n{"op":"bye","id":2}\n'], 2);
  assert.equal(huge.replies[0].ok, true);
  assert.deepEqual(huge.replies.slice(1), [{ id: null, ok: false, error: 'request line longer than 65536 bytes: one JSON object per line, at most 65536 bytes; closing' }]);
  assert.equal(huge.closed, true);
  // A flood of small bad lines is answered line by line and costs nothing else.
  const flood = await raw(port, ['{"op":"hello","id":1,"version":1}\n' + '{}\n'.repeat(5000)], 5001, 10000);
  assert.equal(flood.replies.length, 5001);
  assert.match(String(flood.replies[5000].error), /^no op/);
  await sendSeqs(udp, [1, 2, 3]);
  await waitUntil(() => false, 100);
  assert.equal((await c.close(t)).report.totals.received, 3);
  assert.equal(server.openTrials, 0);
  await c.end();
});

test('stop(): open trials closed, clients told, the listener gone', async () => {
  const { server, port, events } = await serve();
  const c = await ControlClient.connect('127.0.0.1', port);
  await c.open({ port: await freeUdpPort() });
  await server.stop();
  assert.ok(await waitUntil(() => c.closed));
  assert.deepEqual(events.flatMap((e) => (e.event === 'trial-closed' ? [e.reason] : [])), ['server-stopped']);
  await assert.rejects(c.status(1), /the connection closed \(server stopping: trials closed\)/);
  await assert.rejects(ControlClient.connect('127.0.0.1', port), /connection refused/);
});

test('ControlClient: a server that never answers is a timeout naming it, not a hang', async () => {
  const mute = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((res) => mute.listen(0, '127.0.0.1', () => res()));
  const port = (mute.address() as net.AddressInfo).port;
  try {
    await assert.rejects(ControlClient.connect('127.0.0.1', port, { connectTimeoutMs: 300 }),
      new RegExp(`sink control 127\\.0\\.0\\.1:${port} did not answer hello within 0\\.3 s`));
  } finally {
    mute.close();
  }
});
