/**
 * Every command's `--json` output, run for real in a two-namespace veth lab (created here, always removed), checked
 * against its JSON Schema in schemas/ with ajv (draft 2020-12, strict mode, allErrors): the contract scripts rely on.
 * A failure prints ajv's errors and the offending document. Nothing goes anywhere but the lab's veth pair.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { exitOf, flap, labsForThisFile, must, nsRun, rawpoll, rawpollAsync, RAWPOLL, ROOT, udpReceiver, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { startSink } from '../helpers/sink.js';

const SCHEMAS = join(ROOT, 'schemas');
const BASE = 'https://rawpoll.invalid/schemas/';

const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
for (const f of readdirSync(SCHEMAS).filter((n) => n.endsWith('.schema.json'))) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')));

/** Parses one line of `--json` output and validates it against schemas/<name>.schema.json; returns the document. */
function valid<T = Record<string, unknown>>(name: string, line: string): T {
  const v = ajv.getSchema(`${BASE}${name}.schema.json`);
  assert.ok(v, `no schema ${name}.schema.json in ${SCHEMAS}`);
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch {
    assert.fail(`${name}: output is not one JSON document: ${JSON.stringify(line.slice(0, 500))}`);
  }
  if (!v(doc)) assert.fail(`${name}.schema.json rejects the output:\n${ajv.errorsText(v.errors, { separator: '\n' })}\n${line.slice(0, 2000)}`);
  return doc as T;
}

/** stdout of a --json run: exactly one non-empty line. */
function oneLine(stdout: string, what: string): string {
  const lines = stdout.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `${what}: expected one JSON line, got ${lines.length}: ${stdout.slice(0, 500)}`);
  return lines[0];
}

const { tmp, hosts } = labsForThisFile('rawpoll-json-schemas-');
let h: TwoHostLab;

before(() => {
  h = hosts();
});

describe('--json outputs validate against schemas/ (namespaces)', { timeout: 60000 }, () => {
  test('sink --json and blast --json (1000 frames)', async () => {
    const sink = await startSink(h.lab, h.b, ['--json', '--idle', '1', '--port', '9']);
    const bl = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '1000', '--json']);
    assert.equal(bl.code, 0, bl.stderr);
    const b = valid<{ sent: number; lastSeq: number[] }>('blast', oneLine(bl.stdout, 'blast'));
    const s = valid<{ totals: { received: number }; flows: { lastSeq: number }[] }>('sink', oneLine(await sink.output(), 'sink'));
    assert.equal(b.sent, 1000);
    assert.equal(s.totals.received, 1000);
    assert.equal(s.flows[0].lastSeq, b.lastSeq[0], "blast's lastSeq is the sink's");
  });

  test('sink --json-stream: start, intervals, end', async () => {
    const sink = await startSink(h.lab, h.b, ['--json-stream', '--interval', '0.2', '--idle', '1', '--port', '9']);
    const bl = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '1000', '--rate', '4000pps', '--json']);
    assert.equal(bl.code, 0, bl.stderr);
    valid('blast', oneLine(bl.stdout, 'blast --rate'));
    const events = (await sink.output()).split('\n').filter(Boolean).map((l) => valid<{ event: string }>('sink-stream', l).event);
    assert.equal(events[0], 'start');
    assert.equal(events.at(-1), 'end');
    assert.ok(events.slice(1, -1).length >= 2 && events.slice(1, -1).every((e) => e === 'interval'), events.join(','));
  });

  test('send --json on the NIC (into a UDP receiver) and send/blast -w FILE --json offline', async () => {
    const rx = await udpReceiver(h.lab, h.b, 7001, 3);
    const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:7001`, '--count', '3', '--data', 'hello', '--json']);
    assert.equal(r.code, 0, r.stderr);
    valid('send', oneLine(r.stdout, 'send'));
    assert.equal((await rx.done()).length, 3);
    const macs = ['--src-mac', '02:00:00:00:00:01', '--dst-mac', '02:00:00:00:00:02', '--from', '192.0.2.1', '--to', '192.0.2.2:9'];
    const sw = rawpoll(h.a, ['send', ...macs, '-w', join(tmp, 'send.pcap'), '--count', '2', '--json']);
    assert.equal(sw.code, 0, sw.stderr);
    valid('send', oneLine(sw.stdout, 'send -w'));
    const bw = rawpoll(h.a, ['blast', ...macs, '-w', join(tmp, 'blast.pcap'), '--count', '10', '--flows', '2', '--sport', '1000-1001', '--json']);
    assert.equal(bw.code, 0, bw.stderr);
    valid('blast', oneLine(bw.stdout, 'blast -w'));
  });

  test('arp --json', () => {
    const r = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const a = valid<{ mac: string }>('arp', oneLine(r.stdout, 'arp'));
    assert.equal(a.mac, h.macB);
  });

  test('rfc2544 --json: throughput, frame-loss, latency, back-to-back', async () => {
    const control = `${h.ipB}:7100`;
    const serve = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'sink', '--serve', control, '--token', 'schemas']);
    let err = '';
    serve.stderr!.on('data', (d) => (err += d));
    assert.ok(await waitFor(() => /serving trials/.test(err), 10000), `sink --serve did not start: ${err}`);
    const base = ['-i', h.ifA, '--to', `${h.ipB}:9`, '--control', control, '--token', 'schemas', '--sizes', '64,128', '--trial', '0.3', '--settle', '0.1', '--json'];
    const runs: [string, string[]][] = [
      ['throughput', ['--max-rate', '2000', '--resolution', '10']],
      ['frame-loss', ['--max-rate', '2000']],
      ['latency', ['--rate', '1000']],
      ['back-to-back', ['--repeat', '2', '--max-burst', '500', '--throughput', '8Mbps']],
    ];
    for (const [t, more] of runs) {
      const r = await rawpollAsync(h.a, ['rfc2544', t, ...base, ...more]);
      assert.equal(r.code, 0, `rfc2544 ${t}: ${r.stderr}`);
      const doc = valid<{ test: string }>('rfc2544', oneLine(r.stdout, `rfc2544 ${t}`));
      assert.equal(doc.test, t);
    }
    serve.kill('SIGTERM');
  });

  test('netconsole --json (from standard input) and oops --json, into UDP receivers', async () => {
    const nrx = await udpReceiver(h.lab, h.b, 6666, 2);
    const nc = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', `${h.ipB}:6666`, '--json'], 'line one\nline two\n');
    assert.equal(nc.code, 0, nc.stderr);
    const events = nc.stdout.split('\n').filter(Boolean).map((l) => valid<{ event: string }>('netconsole', l).event);
    assert.deepEqual(events, ['ready', 'summary']);
    assert.equal((await nrx.done()).length, 2);
    const log = join(tmp, 'oops.log');
    writeFileSync(log, '<4>[    1.000000] BUG: unable to handle page fault\n<4>[    1.000100] Call Trace:\n');
    const orx = await udpReceiver(h.lab, h.b, 2004, 3);
    const oo = rawpoll(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', log, '--type', 'oops', '--json']);
    assert.equal(oo.code, 0, oo.stderr);
    const o = valid<{ datagrams: number }>('oops', oneLine(oo.stdout, 'oops'));
    assert.equal((await orx.done()).length, o.datagrams);
  });

  test('netdump --json into netdump-server --json --hook, with link-down/link-up events before it', async () => {
    const dir = join(tmp, 'dumps');
    mkdirSync(dir);
    const srv = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'netdump-server', '--dir', dir, '--bind', h.ipB, '-i', h.ifB, '--hook', '/bin/true', '--json']);
    let out = '';
    let err = '';
    srv.stdout!.on('data', (d) => (out += d));
    srv.stderr!.on('data', (d) => (err += d));
    // The server prints nothing until an event: wait for its herald socket, then bounce its link.
    assert.ok(await waitFor(() => /:20023\b/.test(nsRun(h.b, ['ss', '-lun']).stdout), 10000), `netdump-server did not bind: ${err}`);
    await flap(h.b, h.ifB, 300);
    assert.ok(await waitFor(() => /"link-up"/.test(out), 5000), `no link-up event: ${out} ${err}`);
    const core = join(tmp, 'core.bin');
    writeFileSync(core, Buffer.alloc(20000, 0x5a));
    const nd = await rawpollAsync(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', core, '--hostname', 'schemas', '--json']);
    assert.equal(nd.code, 0, nd.stderr);
    const sum = valid<{ bytes: number; serverPort: number }>('netdump', oneLine(nd.stdout, 'netdump'));
    assert.equal(sum.bytes, 20000);
    assert.ok(await waitFor(() => /"event":"hook"/.test(out), 5000), `no dump and hook events: ${out}`);
    srv.kill('SIGTERM');
    assert.equal((await exitOf(srv)).code, 0, err);
    const lines = out.split('\n').filter(Boolean);
    const kinds = lines.map((l) => (JSON.parse(l) as { event: string }).event);
    assert.deepEqual(kinds.filter((k) => k !== 'drops'), ['link-down', 'link-up', 'dump', 'hook', 'stop'], out);
    for (const l of lines) {
      const e = valid<{ event: string }>('netdump-server', l);
      if (e.event.startsWith('link-')) valid('link-event', l);
    }
    const dump = JSON.parse(lines[kinds.indexOf('dump')]) as { status: string; bytes: number; kdh: { hostname: string; parityOk: boolean } };
    assert.deepEqual([dump.status, dump.bytes, dump.kdh.hostname, dump.kdh.parityOk], ['complete', 20000, 'schemas', true]);
  });

  test('--version --json', () => {
    const r = rawpoll(h.a, ['--version', '--json']);
    assert.equal(r.code, 0, r.stderr);
    valid('version', oneLine(r.stdout, '--version --json'));
  });

  test('ndp --json (a lab of its own with IPv6 on, so the shared one stays quiet) and ndp --answer --json', () => {
    const v6 = hosts();
    for (const [ns, dev, n] of [[v6.a, v6.ifA, 1], [v6.b, v6.ifB, 2]] as const) {
      must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${dev}.addr_gen_mode=1`, `net.ipv6.conf.${dev}.accept_ra=0`, `net.ipv6.conf.${dev}.disable_ipv6=0`]);
      must('ip', ['-n', ns, 'addr', 'add', `fd00:5c::${n}/64`, 'dev', dev, 'nodad']);
    }
    const r = rawpoll(v6.a, ['ndp', '-i', v6.ifA, 'fd00:5c::2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(valid<{ mac: string }>('ndp', oneLine(r.stdout, 'ndp')).mac, v6.macB);
    const a = rawpoll(v6.a, ['ndp', '-i', v6.ifA, '--answer', 'fd00:5c::99', '--duration', '0.3', '--json']);
    assert.equal(a.code, 0, a.stderr);
    valid('ndp', oneLine(a.stdout, 'ndp --answer'));
  });
});
