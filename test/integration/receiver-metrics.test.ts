/**
 * --metrics on the three receivers, in namespaces this file creates: each receiver runs in B with --metrics on B's
 * address, rawpoll's own senders send real traffic from A, and curl scrapes /metrics from A. The counters must equal
 * what the senders say they sent (their --json summaries), the files on disk and the receivers' own events, and the
 * text must parse as Prometheus exposition (a strict parser here: every sample of a declared family, HELP and TYPE
 * first, counters ending in _total, label values escaped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { labsForThisFile, nsRun, rawpoll, rawpollAsync, RAWPOLL, ROOT, startRawpoll, waitFor, type TwoHostLab } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rp-metrics-');

interface Family { type: string; help: string; samples: { labels: Record<string, string>; value: number }[] }

/** Prometheus text format 0.0.4, strictly: throws naming the first line that is not. */
function parseExposition(text: string): Map<string, Family> {
  const fams = new Map<string, Family>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if (line === '') continue; // "Empty lines are ignored" (the format's own rule)
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line))) {
      const f = fams.get(m[1]) ?? { type: '', help: '', samples: [] };
      assert.equal(f.help, '', `second HELP for ${m[1]}`);
      f.help = m[2];
      fams.set(m[1], f);
    } else if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      const f = fams.get(m[1]) ?? { type: '', help: '', samples: [] };
      assert.equal(f.samples.length, 0, `TYPE after samples for ${m[1]}`);
      f.type = m[2];
      fams.set(m[1], f);
    } else if ((m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`).exec(line))) {
      const [, name, labelText, v] = m;
      const family = [...fams.keys()].find((k) => name === k || ['_bucket', '_sum', '_count'].some((s) => name === k + s));
      assert.ok(family, `sample of an undeclared family: ${line}`);
      const labels: Record<string, string> = {};
      if (labelText) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
        let at = 0;
        while (at < labelText.length) {
          const l = re.exec(labelText);
          assert.ok(l && l.index === at, `bad labels in: ${line}`);
          labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
          at = re.lastIndex;
        }
      }
      const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : v === 'NaN' ? NaN : Number(v);
      assert.ok(!Number.isNaN(value) || v === 'NaN', `bad value in: ${line}`);
      fams.get(family)!.samples.push({ labels, value });
    } else {
      assert.fail(`not Prometheus text format: ${JSON.stringify(line)}`);
    }
  }
  for (const [name, f] of fams) {
    assert.ok(f.type && f.help, `${name}: HELP and TYPE`);
    if (f.type === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
  }
  return fams;
}

async function scrape(h: TwoHostLab, port: number): Promise<Map<string, Family>> {
  const r = nsRun(h.a, ['curl', '-sS', '--fail', '--max-time', '5', `http://${h.ipB}:${port}/metrics`]);
  assert.equal(r.code, 0, r.stderr);
  return parseExposition(r.stdout);
}

/** The value of NAME with exactly these labels (undefined when there is no such sample). */
function val(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  return m.get(name)?.samples.find((s) => JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}

function sum(m: Map<string, Family>, name: string, labels: Record<string, string>): number {
  return (m.get(name)?.samples ?? []).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

/** Polls until `done(scrape)` holds or 8 s pass; returns the last scrape either way (the asserts then say why). */
async function scrapeUntil(h: TwoHostLab, port: number, done: (m: Map<string, Family>) => boolean): Promise<Map<string, Family>> {
  let m = await scrape(h, port);
  for (let t0 = Date.now(); !done(m) && Date.now() - t0 < 8000;) {
    await new Promise((r) => setTimeout(r, 200));
    m = await scrape(h, port);
  }
  return m;
}

test('collect --metrics: datagrams, bytes, drops, hosts, files written and dumps equal what netconsole and oops sent', async () => {
  const h = hosts();
  const dir = join(tmp, 'collect');
  const c = startRawpoll(h.lab, h.b, ['collect', '--dir', dir, '--netconsole', '6666', '--oops', '2004', '--metrics', `${h.ipB}:9100`, '--json'], /"event":"listening"/);
  assert.ok(await c.up, c.err());

  const lines = Array.from({ length: 25 }, (_, i) => `metrics line ${i} from ${process.pid}`).join('\n') + '\n';
  const nc = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--json'], lines);
  assert.equal(nc.code, 0, nc.stderr);
  const ncSum = JSON.parse(nc.stdout.trim().split('\n').pop()!);
  assert.equal(ncSum.datagrams, 25);
  const logFile = join(tmp, 'oops-in.log');
  writeFileSync(logFile, Array.from({ length: 300 }, (_, i) => `oops line ${i}\n`).join(''));
  const oo = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--dump-id', '5', '--json']);
  assert.equal(oo.code, 0, oo.stderr);
  const oops = JSON.parse(oo.stdout);
  assert.ok(await waitFor(() => c.out().includes('"dump-complete"'), 15000), c.out());
  const done = c.out().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === 'dump-complete');

  const m = await scrapeUntil(h, 9100, (x) => val(x, 'rawpoll_datagrams_received_total', { proto: 'netconsole' }) === ncSum.datagrams &&
    val(x, 'rawpoll_datagrams_received_total', { proto: 'netoops' }) === oops.datagrams);
  assert.equal(val(m, 'rawpoll_datagrams_received_total', { proto: 'netconsole' }), ncSum.datagrams);
  assert.equal(val(m, 'rawpoll_bytes_received_total', { proto: 'netconsole' }), ncSum.payloadBytes);
  assert.equal(val(m, 'rawpoll_datagrams_received_total', { proto: 'netoops' }), oops.datagrams);
  assert.equal(val(m, 'rawpoll_bytes_received_total', { proto: 'netoops' }), oops.datagrams * oops.datagramBytes);
  // Each chunk is kept once; every other copy (the sender's retransmit rounds) is a drop, counted by reason.
  assert.equal(sum(m, 'rawpoll_drops_total', { proto: 'netoops' }), oops.datagrams - oops.packetCount);
  assert.equal(sum(m, 'rawpoll_drops_total', { proto: 'netconsole' }), 0);
  assert.ok(m.get('rawpoll_drops_total')!.samples.some((s) => s.labels.reason === 'too_big'), 'every reason is listed, zero or not');
  assert.equal(val(m, 'rawpoll_socket_drops_total', { proto: 'netoops' }), 0);
  assert.equal(val(m, 'rawpoll_hosts_seen'), 1);
  assert.equal(m.get('rawpoll_hosts_seen')!.type, 'gauge');
  assert.equal(val(m, 'rawpoll_dumps_completed_total', { proto: 'netoops' }), 1);
  assert.equal(val(m, 'rawpoll_dumps_failed_total', { proto: 'netoops', reason: 'partial' }), 0);
  assert.equal(val(m, 'rawpoll_bytes_written_total', { proto: 'netoops' }), statSync(done.file).size + statSync(done.sidecar).size);
  const ncLog = join(dir, 'netconsole', `${h.ipA}.log`);
  assert.equal(readFileSync(ncLog, 'utf8'), lines);
  assert.equal(val(m, 'rawpoll_bytes_written_total', { proto: 'netconsole' }), lines.length);
  assert.ok((val(m, 'rawpoll_process_resident_memory_bytes') ?? 0) > 1e6, 'process metrics, prefixed');

  // The same port again: the second collector fails at start (exit 1, naming the address), before "listening".
  const again = rawpoll(h.b, ['collect', '--dir', join(tmp, 'c2'), '--oops', '2005', '--metrics', `${h.ipB}:9100`]);
  assert.equal(again.code, 1, again.stderr);
  assert.equal(again.stderr.trim(), `rawpoll: cannot serve --metrics on TCP ${h.ipB}:9100: already in use (choose another --metrics port)`);
  assert.doesNotMatch(again.stdout, /listening/);
  const bad = rawpoll(h.b, ['collect', '--dir', join(tmp, 'c3'), '--oops', '--metrics', '70000']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^rawpoll: bad --metrics '70000': expected PORT/);
  // Anything but /metrics is not found.
  const other = nsRun(h.a, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${h.ipB}:9100/`]);
  assert.equal(other.stdout, '404');

  assert.equal(await c.stop(), 0, c.err());
});

test('netdump-server --metrics: two dumps from rawpoll netdump, every datagram counted, bytes written = the files', async () => {
  const h = hosts();
  const dir = join(tmp, 'nd');
  nsRun(h.b, ['mkdir', '-p', dir]);
  const s = startRawpoll(h.lab, h.b, ['netdump-server', '--dir', dir, '--metrics', `${h.ipB}:9101`], /Waiting for clients/);
  assert.ok(await s.up, s.err());
  let sent = 0;
  let fileBytes = 0;
  for (const size of [1_000_000, 300_000]) {
    const f = join(tmp, `core-${size}`);
    writeFileSync(f, randomBytes(size));
    fileBytes += size;
    const r = await rawpollAsync(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', f, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    sent += j.packets + j.retransmits;
  }
  assert.ok(await waitFor(() => (s.out().match(/Completed dump from client/g) ?? []).length === 2, 10000), s.out());
  const m = await scrapeUntil(h, 9101, (x) => val(x, 'rawpoll_dumps_completed_total', { proto: 'netdump' }) === 2 &&
    val(x, 'rawpoll_datagrams_received_total', { proto: 'netdump' }) === sent);
  assert.equal(val(m, 'rawpoll_dumps_completed_total', { proto: 'netdump' }), 2);
  for (const reason of ['timeout', 'error', 'stopped']) assert.equal(val(m, 'rawpoll_dumps_failed_total', { proto: 'netdump', reason }), 0);
  assert.equal(val(m, 'rawpoll_datagrams_received_total', { proto: 'netdump' }), sent);
  assert.ok(val(m, 'rawpoll_bytes_received_total', { proto: 'netdump' })! >= fileBytes + 24 * sent);
  assert.equal(val(m, 'rawpoll_bytes_written_total', { proto: 'netdump' }), fileBytes);
  assert.equal(statSync(join(dir, `vmcore.${h.ipA}.0`)).size + statSync(join(dir, `vmcore.${h.ipA}.1`)).size, fileBytes);
  assert.equal(val(m, 'rawpoll_hosts_seen'), 1);
  assert.equal(sum(m, 'rawpoll_drops_total', { proto: 'netdump' }), 0);
  assert.equal(m.get('rawpoll_drops_total')!.samples.length, 13, 'every NetdumpDrops reason');
  assert.equal(val(m, 'rawpoll_socket_drops_total', { proto: 'netdump' }), 0);
  assert.equal(val(m, 'rawpoll_netdump_sessions_open'), 0);
  assert.equal(await s.stop(), 0, s.err());
});

test('sink --serve --metrics: a trial blasted into, counted while it runs and after it closed', async () => {
  const h = hosts();
  const s = startRawpoll(h.lab, h.b, ['sink', '--serve', `${h.ipB}:5201`, '--metrics', `${h.ipB}:9102`], /serving trials on/);
  assert.ok(await s.up, s.err());
  const control = resolve(ROOT, 'dist', 'src', 'exp', 'control.js');
  // The tester, in A: open a trial on UDP 9, blast 400 frames, scrape mid-trial, close, scrape again.
  const script = join(tmp, 'trial.mjs');
  writeFileSync(script, `
    import { ControlClient } from ${JSON.stringify(control)};
    import { spawnSync } from 'node:child_process';
    const get = async () => (await fetch('http://${h.ipB}:9102/metrics')).text();
    const c = await ControlClient.connect('${h.ipB}', 5201);
    const trial = await c.open({ port: 9 });
    const b = spawnSync(process.execPath, [${JSON.stringify(RAWPOLL)}, 'blast', '-i', '${h.ifA}', '--to', '${h.ipB}:9', '--count', '400', '--rate', '20kpps']);
    if (b.status !== 0) throw new Error('blast: ' + b.stderr);
    let st;
    for (let i = 0; i < 50; i++) { st = await c.status(trial); if (st.received >= 400) break; await new Promise((r) => setTimeout(r, 100)); }
    const mid = await get();
    const { report } = await c.close(trial);
    const end = await get();
    await c.end();
    console.log(JSON.stringify({ mid, end, datagrams: report.totals.datagrams, received: report.totals.received, bytes: report.totals.bytes }));
  `);
  const r = nsRun(h.a, [process.execPath, script]);
  assert.equal(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout);
  assert.equal(o.received, 400);
  for (const [when, text] of [['running', o.mid], ['closed', o.end]]) {
    const m = parseExposition(text);
    assert.equal(val(m, 'rawpoll_datagrams_received_total', { proto: 'pktgen' }), 400, when);
    assert.equal(val(m, 'rawpoll_bytes_received_total', { proto: 'pktgen' }), o.bytes, when);
    assert.equal(val(m, 'rawpoll_hosts_seen'), 1, when);
    assert.equal(sum(m, 'rawpoll_drops_total', { proto: 'pktgen' }), 0, when);
    assert.equal(val(m, 'rawpoll_socket_drops_total', { proto: 'pktgen' }), 0, when);
    assert.equal(val(m, 'rawpoll_sink_trials_total'), 1, when);
    assert.equal(val(m, 'rawpoll_sink_trials_open'), when === 'running' ? 1 : 0, when);
  }
  assert.equal(o.datagrams, 400);
  // Without --serve there is nothing to serve metrics of: refused as a --serve flag.
  const alone = rawpoll(h.b, ['sink', '--port', '9', '--metrics', '9103', '--count', '1']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--metrics is a --serve flag/);
  assert.equal(await s.stop(), 0, s.err());
});
