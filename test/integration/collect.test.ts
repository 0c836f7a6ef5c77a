/**
 * `rawpoll collect` fed garbage over a real veth pair: random datagrams, truncated headers, absurd packet_count, and a
 * flood of plausible-looking dumps that never complete. It must keep running, keep its memory within the caps, say what
 * it dropped, and still take a real report afterwards. The garbage comes from a plain kernel UDP socket in the peer
 * namespace (the collector is what is under test here).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { twoHosts, rawpollAsync, waitFor, nsRun, RAWPOLL, rssKiB } from '../helpers/lab.js';
import { startCollector } from '../helpers/collector.js';

/** Runs in the sender namespace: node -e GARBAGE host port. Prints one JSON line of what it sent. */
const GARBAGE = String.raw`
const dgram = require('node:dgram');
const [host, port, mode, boot] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const rnd = (n) => Math.floor(Math.random() * n);
function header(o) {
  const b = Buffer.alloc(88 + 1024);
  b.writeUInt16LE(3, 0); b.writeUInt16LE(o.dumpId, 2); b.writeUInt16LE(88, 4); b.writeUInt16LE(88, 8);
  b.writeUInt16LE(1, 10); b.writeUInt32LE(o.count, 12); b.writeUInt32LE(o.no, 16); b.writeUInt32LE(o.bootId, 20);
  b.fill(0x41 + (o.no % 26), 88);
  return b;
}
const counts = { random: 0, truncated: 0, absurd: 0, plausible: 0 };
async function send(b) {
  await new Promise((r) => s.send(b, Number(port), host, () => r()));
}
(async () => {
  if (mode === 'mixed') {
  for (let i = 0; i < 20000; i++) {
    const b = Buffer.alloc(rnd(1500)); for (let j = 0; j < b.length; j++) b[j] = rnd(256);
    await send(b); counts.random++;
  }
  for (let i = 0; i < 2000; i++) {
    await send(header({ dumpId: i, bootId: 1, count: 10, no: 0 }).subarray(0, rnd(1112))); counts.truncated++;
  }
  for (let i = 0; i < 2000; i++) {
    await send(header({ dumpId: i, bootId: 2, count: i % 2 ? 0xffffffff : 1000000 + i, no: 0 })); counts.absurd++;
  }
  }
  // Plausible dumps of 600 chunks that never complete: 40 x 600 x 1 KiB = 24 MiB if nothing bounded them.
  for (let d = 0; d < 40; d++) for (let no = 0; no < 600; no++) {
    await send(header({ dumpId: 1000 + d, bootId: Number(boot), count: 601, no })); counts.plausible++;
  }
  s.close();
  process.stdout.write(JSON.stringify(counts) + '\n');
})();
`;

test('collect: garbage never stops it, memory stays bounded, drops are reported, a real report still lands', async (t) => {
  const h = twoHosts();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-cg-'));
  try {
    const maxBytes = 2 * 1024 * 1024;
    const c = await startCollector(h.lab, h.b, dir, ['--oops', '2004', '--idle', '30', '--max-dumps', '8', '--max-bytes', String(maxBytes)]);
    const { proc, events } = c;
    const pid = proc.pid!; // `ip netns exec` execs the command: same pid
    const before = rssKiB(pid);

    // Phase 1: everything; phases 2-5: another 24 MiB each of plausible never-completing dumps. Bounded memory
    // means RSS levels off whatever the volume of garbage (V8 frees the per-datagram buffers lazily and sizes its heap
    // as it likes, so RSS moves by some MiB between phases; unbounded reassembly would add 24 MiB per phase).
    const sent: unknown[] = [];
    const rss: { rss: number; hwm: number }[] = [];
    for (const [mode, boot] of [['mixed', '3'], ['plausible', '4'], ['plausible', '5'], ['plausible', '6'], ['plausible', '7']]) {
      const g = nsRun(h.a, [process.execPath, '-e', GARBAGE, h.ipB, '2004', mode, boot]);
      assert.equal(g.code, 0, g.stderr);
      sent.push(JSON.parse(g.stdout));
      await new Promise((r) => setTimeout(r, 1500)); // let the collector drain its socket
      assert.equal(proc.exitCode, null, `collector died: ${c.stderr()}`);
      rss.push(rssKiB(pid));
    }
    const after = rss[rss.length - 1];

    // A real report still gets through, complete.
    const log = Buffer.from(Array.from({ length: 20000 }, (_, i) => `line ${i}\n`).join('').slice(0, 20000));
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, log);
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--dump-id', '7', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await waitFor(() => events.some((e) => e.event === 'dump-complete' && e.dump_id === 7), 15000), JSON.stringify(events.slice(-5)));
    const done = events.find((e) => e.event === 'dump-complete' && e.dump_id === 7)!;
    assert.deepEqual(readFileSync(done.file as string), log);

    assert.equal(await c.stop(), 0, c.stderr());
    const dropped = events.filter((e) => e.event === 'dropped').pop();
    assert.ok(dropped, 'no dropped event');
    const summary = events.find((e) => e.event === 'summary')!;
    const drops = summary.oops_drops as Record<string, number>;
    assert.ok(drops.truncated > 0 && drops.too_big > 0 && drops.version > 0, JSON.stringify(drops));
    const partial = events.filter((e) => e.event === 'dump-partial');
    const droppedDumps = events.filter((e) => e.event === 'dump-dropped').length;
    assert.ok(partial.some((e) => e.reason === 'evicted'), 'caps never forced an eviction');
    const mib = (k: number) => (k / 1024).toFixed(1);
    const figure = `collector RSS ${mib(before.rss)} MiB at start, after each garbage phase ${rss.map((x) => mib(x.rss)).join(' / ')} MiB, ` +
      `peak ${mib(after.hwm)} MiB (cap --max-bytes ${maxBytes >> 20} MiB; ${rss.length * 24} MiB of plausible chunks + 24k junk datagrams sent); ` +
      `sent ${JSON.stringify(sent)}; drops ${JSON.stringify(drops)}; ${partial.length} partial dumps written, ${droppedDumps} dropped for write backlog`;
    t.diagnostic(figure);
    // Phases 3-5 sent 72 MiB more: unbounded, RSS would grow by that much; bounded, it stays within GC slack.
    assert.ok(after.rss - rss[1].rss < 32 * 1024, figure);
    assert.ok(after.hwm - before.rss < 128 * 1024, figure);
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Runs in the sender namespace: node -e FLOOD host mode n. The floods of issue 9, from a plain kernel UDP socket, at
 * most ~20,000 datagrams/s: what is under test is what the collector does with what it receives, not how much the
 * kernel drops from a full socket buffer (it would take the real report's datagrams with it).
 *   singles  n one-datagram fake dumps (the attacker's 1240-byte header: packet_count 4096, zero data), fresh dump_ids
 *   pairs    n fake dumps of two datagrams each (they pass probation and fill the write queue)
 *   ncfrag   n one-byte pieces `6,777,1,-,ncfrag=<2i>/262144;z` of one netconsole record
 */
const FLOOD = String.raw`
const dgram = require('node:dgram');
const [host, mode, n] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const send = (b, port) => new Promise((r) => s.send(b, port, host, () => r()));
function fake(id, boot, no) {
  const b = Buffer.alloc(1240);
  Buffer.from('03000100d8000000d8000100' + '00100000' + '00000000' + '000000f0' + '362e31', 'hex').copy(b);
  b.writeUInt16LE(id & 0xffff, 2); b.writeUInt32LE(no, 16); b.writeUInt32LE(boot >>> 0, 20);
  return b;
}
(async () => {
  for (let i = 0; i < Number(n); i++) {
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 10));
    if (mode === 'singles') await send(fake(i, 0xf0000000 + (i >>> 16), 0), 2004);
    else if (mode === 'pairs') { await send(fake(i, 0xf1000000, 0), 2004); await send(fake(i, 0xf1000000, 1), 2004); }
    else await send(Buffer.from('6,777,1,-,ncfrag=' + 2 * i + '/262144;z'), 6666);
  }
  s.close();
})();
`;

test('collect under the floods of issue 9: memory bounded, a real oops report and a real netconsole record land, drops named', async (t) => {
  const h = twoHosts();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-cf-'));
  try {
    const c = await startCollector(h.lab, h.b, dir, ['--oops', '2004', '--netconsole', '6666']);
    const { proc, events } = c;
    const pid = proc.pid!;
    const before = rssKiB(pid);
    // Fill the write queue with partial fakes first (from the same address as the real sender below).
    const pairs = nsRun(h.a, [process.execPath, '-e', FLOOD, h.ipB, 'pairs', '10000']);
    assert.equal(pairs.code, 0, pairs.stderr);
    // Then one-datagram fakes while the real report goes out.
    const singles = h.lab.spawn(h.a, [process.execPath, '-e', FLOOD, h.ipB, 'singles', '40000']);
    const singlesDone = new Promise<number | null>((r) => singles.on('close', (code) => r(code)));
    const log = Buffer.from(Array.from({ length: 6000 }, (_, i) => `<0>[${i}.000000] real oops line ${i}\n`).join('').slice(0, 50 * 1024));
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, log);
    await new Promise((r) => setTimeout(r, 300));
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--dump-id', '7', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const sentAt = Date.now();
    const isReal = (e: Record<string, unknown>) => e.event === 'dump-complete' && e.dump_id === 7;
    const done = await c.wait(isReal, 30_000);
    const lateMs = Date.now() - sentAt;
    assert.ok(done, JSON.stringify(events.slice(-5)));
    assert.deepEqual(readFileSync(done.file as string), log);
    assert.equal(await singlesDone, 0);

    // netconsole: the quadratic-reassembly flood, then a real extended record of 3 pieces from the same host.
    const nc = nsRun(h.a, [process.execPath, '-e', FLOOD, h.ipB, 'ncfrag', '30000']);
    assert.equal(nc.code, 0, nc.stderr);
    await new Promise((r) => setTimeout(r, 500));
    const line = 'real netconsole record '.repeat(100);
    const sent = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--extended'], line + '\n');
    assert.equal(sent.code, 0, sent.stderr);
    const ncLog = join(dir, 'netconsole', `${h.ipA}.log`);
    assert.ok(await waitFor(() => { try { return readFileSync(ncLog, 'utf8').includes(line); } catch { return false; } }, 15000), 'netconsole record not written');
    assert.equal(proc.exitCode, null, `collector died: ${c.stderr()}`);
    const after = rssKiB(pid);

    assert.equal(await c.stop(), 0, c.stderr());
    const summary = events.find((e) => e.event === 'summary')!;
    const oopsDrops = summary.oops_drops as Record<string, number>;
    const ncDrops = summary.netconsole_drops as Record<string, number>;
    const figure = `real report written ${lateMs} ms after its sender exited; collector RSS ${(before.rss / 1024).toFixed(1)} MiB at start, ` +
      `${(after.rss / 1024).toFixed(1)} MiB after, peak ${(after.hwm / 1024).toFixed(1)} MiB; oops drops ${JSON.stringify(oopsDrops)}; ` +
      `netconsole drops ${JSON.stringify(ncDrops)}; ${events.filter((e) => e.event === 'dump-partial').length} partial dumps written`;
    t.diagnostic(figure);
    assert.ok(oopsDrops.evicted_unconfirmed > 0 && oopsDrops.backlog > 0, figure);
    assert.ok(ncDrops.too_many_fragments > 0, figure);
    assert.ok(events.some((e) => e.event === 'dropped' && e.proto === 'netconsole'), 'no dropped line for netconsole');
    // Before the budgets: 6.2 GB and an OOM on the oops flood, 113 s for the real report, 53 s of CPU for 25k pieces.
    assert.ok(after.hwm - before.rss < 256 * 1024, figure);
    assert.ok(lateMs < 15_000, figure);
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('collect runs both receivers: a netconsole line and an oops report from the same host, one new-host event', async () => {
  const h = twoHosts();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-cb-'));
  try {
    const proc = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--oops', '2004', '--netconsole', '6666']);
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
    assert.ok(await waitFor(() => out.includes(' listening '), 10000), out);
    const line = `netconsole: hello from ${process.pid}\n`;
    const g = nsRun(h.a, [process.execPath, '-e',
      `const s=require('node:dgram').createSocket('udp4');s.send(Buffer.from(${JSON.stringify(line)}),6666,'${h.ipB}',()=>s.close())`]);
    assert.equal(g.code, 0, g.stderr);
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, 'oops body\n');
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--dump-id', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await waitFor(() => / dump-complete /.test(out), 10000), out);
    assert.ok(await waitFor(() => { try { return readFileSync(join(dir, 'netconsole', `${h.ipA}.log`), 'utf8') === line; } catch { return false; } }, 5000));
    proc.kill('SIGINT');
    assert.equal(await exited, 0);
    // text lines: `<time> <event> <host> k=v …`
    const lines = out.trim().split('\n');
    assert.ok(lines.every((l) => /^\d{4}-\d\d-\d\dT\S+ [a-z-]+ \S+/.test(l)), out);
    assert.equal(lines.filter((l) => / new-host /.test(l)).length, 1, out);
    assert.match(lines[lines.length - 1], / summary - /);
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('collect that falls behind: the socket overflow is counted (socket_overflow), every line is either stored or counted', async () => {
  const h = twoHosts();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-co-'));
  try {
    const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666']);
    // 60 000 lines of ~1 KB while collect is stopped: more than its 32 MiB socket buffer holds (each datagram costs
    // its data plus ~1 KB of kernel bookkeeping), so the kernel must drop some, and collect must say how many.
    const N = 60000;
    c.proc.kill('SIGSTOP');
    let g;
    try {
      g = nsRun(h.a, [process.execPath, '-e', String.raw`
        const s = require('node:dgram').createSocket('udp4');
        const pad = 'x'.repeat(1000);
        let i = 0;
        (async () => {
          for (; i < ${N}; i++) await new Promise((r) => s.send(Buffer.from('line ' + i + ' ' + pad + '\n'), 6666, '${h.ipB}', r));
          s.close();
        })();`]);
    } finally {
      c.proc.kill('SIGCONT');
    }
    assert.equal(g.code, 0, g.stderr);
    const logFile = join(dir, 'netconsole', `${h.ipA}.log`);
    const stored = () => { try { return readFileSync(logFile, 'utf8').split('\n').length - 1; } catch { return 0; } };
    let last = -1;
    await waitFor(() => { const n = stored(); const still = n === last; last = n; return still && n > 0; }, 30000, 500);
    assert.equal(await c.stop(), 0, c.stderr());
    const summary = c.events.find((e) => e.event === 'summary') as { netconsole_drops?: Record<string, number> };
    const overflow = summary.netconsole_drops?.socket_overflow ?? 0;
    assert.ok(overflow > 0, `the socket overflowed and said so: ${JSON.stringify(summary)}`);
    assert.equal(stored() + overflow, N, `stored ${stored()} + socket_overflow ${overflow}`);
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
