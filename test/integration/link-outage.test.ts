// The link-state policy (README, "When the link goes down") on real veth links: `ip link set IF down; sleep 2;
// ip link set IF up` and `ip link del IF` under long-running commands, as a user would do it. With npm cap these
// aborted the process (SIGABRT, mscdex/cap#82); every test here also asserts that no rawpoll process died by a signal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { exitOf, flap, labsForThisFile, type Lab, must, RAWPOLL, ROOT, rxPackets, waitFor, type TwoHostLab } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rawpoll-outage-');

interface Bg {
  p: ChildProcess;
  out: () => string;
  err: () => string;
  /** The JSON lines printed so far. */
  events: () => Record<string, unknown>[];
}

async function background(lab: Lab, ns: string, args: string[], ready: RegExp): Promise<Bg> {
  const p = lab.spawn(ns, args);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  p.stderr!.on('data', (d: Buffer) => (err += d));
  const ok = await waitFor(() => ready.test(out) || ready.test(err) || p.exitCode !== null, 10000);
  if (!ok || p.exitCode !== null) throw new Error(`${args.join(' ')} did not get ready: ${out} ${err}`);
  const events = () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { p, out: () => out, err: () => err, events };
}

/** `socat -u udp-recv:PORT -` in the peer namespace: every datagram's payload, in arrival order. */
async function socat(h: TwoHostLab, port: number): Promise<() => string> {
  const s = h.lab.spawn(h.b, ['socat', '-u', `UDP-RECV:${port}`, '-']);
  let got = '';
  s.stdout!.on('data', (d: Buffer) => (got += d));
  const bound = await waitFor(() => (spawnSync('ip', ['netns', 'exec', h.b, 'ss', '-uln']).stdout?.toString() ?? '').includes(`:${port} `), 5000);
  assert.ok(bound, `socat did not bind UDP ${port}`);
  return () => got;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('netconsole --follow: a 2 s flap of its link; lines written during and after it all arrive, in order', async () => {
  const h = hosts();
  const got = await socat(h, 6671);
  const file = join(tmp, 'flap.log');
  writeFileSync(file, '');
  const nc = await background(h.lab, h.a, [process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', `${h.ipB}:6671`,
    '--follow', file, '--json'], /"event":"ready"/);
  const lines: string[] = [];
  const write = (tag: string, n: number) => {
    for (let i = 0; i < n; i++) {
      const l = `${tag} ${i}`;
      lines.push(l);
      appendFileSync(file, l + '\n');
    }
  };
  write('before', 5);
  assert.ok(await waitFor(() => got().split('\n').length > 5, 10000), `before the flap: ${got()}`);
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'down']);
  assert.ok(await waitFor(() => nc.events().some((e) => e.event === 'link-down'), 3000), 'link-down event');
  // Written while the link is down: they wait in the queue.
  for (let k = 0; k < 4; k++) {
    write(`during${k}`, 5);
    await sleep(400);
  }
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'up']);
  assert.ok(await waitFor(() => nc.events().some((e) => e.event === 'link-up'), 5000), 'link-up event');
  write('after', 5);
  const want = lines.join('\n') + '\n';
  assert.ok(await waitFor(() => got() === want, 10000), `want every line in order, got:\n${got()}`);
  nc.p.kill('SIGINT');
  const x = await exitOf(nc.p);
  assert.equal(x.signal, null, `netconsole died by ${x.signal}: ${nc.err()}`);
  assert.equal(x.code, 0, nc.err());
  const up = nc.events().find((e) => e.event === 'link-up')!;
  assert.ok((up.downMs as number) >= 1000 && (up.downMs as number) < 5000, `downMs ${up.downMs}`);
  const summary = nc.events().find((e) => e.event === 'summary') as { targets: Record<string, number>[]; messages: number };
  assert.equal(summary.messages, lines.length);
  const t = summary.targets[0];
  assert.equal(t.datagrams, lines.length, 'every message went out');
  assert.equal(t.linkOutages, 1);
  assert.ok(t.queuedWhileDown >= 20, `queuedWhileDown ${t.queuedWhileDown}`);
  assert.equal(t.droppedQueueFull, 0);
  assert.equal(t.notSentLinkDown, 0);
});

test('netconsole --link-queue 3: what overflows the queue during an outage is counted as dropped, never silently lost', async () => {
  const h = hosts();
  const got = await socat(h, 6672);
  const file = join(tmp, 'overflow.log');
  writeFileSync(file, '');
  const nc = await background(h.lab, h.a, [process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', `${h.ipB}:6672`,
    '--follow', file, '--link-queue', '3'], /->/);
  appendFileSync(file, 'first\n');
  assert.ok(await waitFor(() => got() === 'first\n', 10000), `got ${JSON.stringify(got())}; netconsole said: ${nc.err()}`);
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'down']);
  assert.ok(await waitFor(() => /link \S+ down/.test(nc.err()), 3000), nc.err());
  for (let i = 0; i < 10; i++) appendFileSync(file, `down ${i}\n`);
  await sleep(800);
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'up']);
  // The newest three waited; the seven before them were dropped (oldest first).
  assert.ok(await waitFor(() => got() === 'first\ndown 7\ndown 8\ndown 9\n', 10000), `got:\n${got()}`);
  nc.p.kill('SIGTERM');
  const x = await exitOf(nc.p);
  assert.equal(x.signal, null, nc.err());
  assert.match(nc.out(), /1 link outage, 10 datagrams queued, 7 dropped while down/);
  assert.match(nc.err(), /up again after \d+\.\d\d s down/);
});

test('netconsole: its interface deleted -> summary, then exit 1 "interface IF disappeared"', async () => {
  const h = hosts();
  const file = join(tmp, 'gone.log');
  writeFileSync(file, '');
  const nc = await background(h.lab, h.a, [process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', `${h.ipB}:6673`,
    '--dst-mac', h.macB, '--follow', file, '--json'], /"event":"ready"/);
  appendFileSync(file, 'one\n');
  await sleep(300);
  must('ip', ['-n', h.a, 'link', 'del', h.ifA]);
  const x = await exitOf(nc.p);
  assert.equal(x.signal, null, `died by ${x.signal}: ${nc.err()}`);
  assert.equal(x.code, 1, nc.err());
  assert.match(nc.err(), new RegExp(`^rawpoll: interface ${h.ifA} disappeared$`, 'm'));
  const ev = nc.events();
  assert.ok(ev.some((e) => e.event === 'link-gone'));
  const summary = ev.find((e) => e.event === 'summary');
  assert.ok(summary, 'the summary is printed before exit');
  assert.equal(summary!.stopped, `interface ${h.ifA} disappeared`);
  assert.equal(summary!.messages, 1);
});

/** pktgen-headed datagrams from namespace a's kernel UDP socket (test/helpers/pktgen-udp.ts), paced. */
function kernelSender(h: TwoHostLab, port: number, pps: number, seconds: number): ChildProcess {
  return h.lab.spawn(h.a, [process.execPath, resolve(ROOT, 'dist', 'test', 'helpers', 'pktgen-udp.js'), h.ipB, String(port), String(pps), String(seconds), '5009']);
}

test('sink --capture: a 2 s flap of the capture link; it keeps running, reports the outage and counts both sides of it', async () => {
  const h = hosts();
  const sink = await background(h.lab, h.b, [process.execPath, RAWPOLL, 'sink', '--capture', '-i', h.ifB, '--port', '9100',
    '--json', '--duration', '7'], /listening/);
  const rx0 = rxPackets(h.b, h.ifB);
  const tx = kernelSender(h, 9100, 2000, 6);
  await sleep(1500);
  await flap(h.b, h.ifB, 2000);
  const x = await exitOf(sink.p, 20000);
  await exitOf(tx, 10000);
  assert.equal(x.signal, null, `sink died by ${x.signal}: ${sink.err()}`);
  assert.equal(x.code, 0, sink.err());
  const ev = sink.events();
  assert.ok(ev.some((e) => e.event === 'link-down') && ev.some((e) => e.event === 'link-up'), sink.out());
  const report = ev.find((e) => 'totals' in e) as { totals: { received: number; lost: number }; capture: { received: number; dropped: number }; linkOutages: number; linkDownMs: number; flows: { lastSeq: number }[] };
  assert.ok(report, sink.out());
  assert.equal(report.linkOutages, 1);
  assert.ok(report.linkDownMs >= 1500 && report.linkDownMs < 5000, `linkDownMs ${report.linkDownMs}`);
  // Frames before and after the flap arrived, and every seq the sender used is either received or counted lost.
  // (How many the outage cost depends on the sending kernel: it drops some with ENOBUFS, libuv queues others and
  // sends them in a burst when the link is back — so the oracle is the receiving kernel's own count below.)
  assert.ok(report.totals.received > 4000, `received ${report.totals.received}`);
  assert.equal(report.totals.received + report.totals.lost, report.flows[0].lastSeq, 'received + lost = every seq sent');
  assert.equal(report.capture.dropped, 0, `nothing dropped by our own ring at 2 kpps: ${JSON.stringify(report.capture)} ${JSON.stringify(report.totals)}`);
  // The peer kernel's own count (rx_packets, which resets nothing across a flap) agrees with what the sink saw.
  const rx = rxPackets(h.b, h.ifB) - rx0;
  assert.ok(Math.abs(rx - report.totals.received) <= 5, `rx_packets ${rx} vs sink ${report.totals.received}: ${sink.out()}`);
});

test('sink --capture: its interface deleted -> report printed, exit 1 "interface IF disappeared"', async () => {
  const h = hosts();
  const sink = await background(h.lab, h.b, [process.execPath, RAWPOLL, 'sink', '--capture', '-i', h.ifB, '--port', '9101'], /listening/);
  await sleep(300);
  must('ip', ['-n', h.b, 'link', 'del', h.ifB]);
  const x = await exitOf(sink.p);
  assert.equal(x.signal, null, sink.err());
  assert.equal(x.code, 1, sink.err());
  assert.match(sink.out(), new RegExp(`stopped: interface ${h.ifB} disappeared`));
  assert.match(sink.err(), new RegExp(`^rawpoll: interface ${h.ifB} disappeared$`, 'm'));
});

test('collect: a 2 s flap of its link is reported (default: every link with an address) and it keeps receiving', async () => {
  const h = hosts();
  const dir = join(tmp, 'collect-flap');
  const c = await background(h.lab, h.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', '6674', '--json'], /"listening"/);
  const sendLine = (text: string) => spawnSync('ip', ['netns', 'exec', h.a, 'socat', '-u', '-', `UDP-SENDTO:${h.ipB}:6674,sourceport=6665`], { input: text + '\n' });
  sendLine('before the flap');
  await flap(h.b, h.ifB, 2000);
  assert.ok(await waitFor(() => c.events().some((e) => e.event === 'link-up'), 5000), c.out());
  // The peer's ARP entry for B may have to be refreshed after the flap: give the kernel sender a moment.
  await sleep(200);
  sendLine('after the flap');
  const log = () => spawnSync('sh', ['-c', `cat ${dir}/netconsole/*.log`]).stdout.toString();
  assert.ok(await waitFor(() => log().includes('after the flap'), 10000), `collect's files: ${log()}`);
  assert.ok(log().includes('before the flap'));
  c.p.kill('SIGTERM');
  const x = await exitOf(c.p);
  assert.equal(x.signal, null, c.err());
  assert.equal(x.code, 0, c.err());
  const down = c.events().find((e) => e.event === 'link-down')!;
  const up = c.events().find((e) => e.event === 'link-up')!;
  assert.equal(down.iface, h.ifB);
  assert.ok((up.downMs as number) >= 1500 && (up.downMs as number) < 5000, `downMs ${up.downMs}`);
});

test('collect -i IF: the named link deleted -> summary, then exit 1 "interface IF disappeared"', async () => {
  const h = hosts();
  const dir = join(tmp, 'collect-gone');
  const c = await background(h.lab, h.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--oops', '20040', '-i', h.ifB], /listening/);
  must('ip', ['-n', h.b, 'link', 'del', h.ifB]);
  const x = await exitOf(c.p);
  assert.equal(x.signal, null, c.err());
  assert.equal(x.code, 1, c.err());
  assert.match(c.out(), /link-gone/);
  assert.match(c.out(), / summary /);
  assert.match(c.err(), new RegExp(`^rawpoll: interface ${h.ifB} disappeared$`, 'm'));
  const bad = spawnSync('ip', ['netns', 'exec', h.b, process.execPath, RAWPOLL, 'collect', '--dir', dir, '--oops', '20041', '-i', 'nosuch0'], { timeout: 10000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.toString(), /no interface 'nosuch0'/);
});
