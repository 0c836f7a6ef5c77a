/**
 * `rawpoll sink --serve` over IPv6: the control channel on [addr]:port, trials bound to an IPv6 address (--bind),
 * IPv6 blast traffic counted in them, and the client written as [addr]:port in the --json events. Two namespaces and a
 * veth pair made here, always removed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exitOf, RAWPOLL, rawpoll, ROOT, twoHosts, waitFor, type TwoHostLab } from '../helpers/lab.js';

const labs: TwoHostLab[] = [];
after(() => {
  for (const h of labs) h.lab.destroy();
});

test('sink --serve [IPv6]:PORT --bind IPv6: a trial opened over the IPv6 control channel counts an IPv6 blast exactly', async () => {
  const h = twoHosts();
  labs.push(h);
  const A6 = 'fd00:5e7e::1';
  const B6 = 'fd00:5e7e::2';
  h.lab.addr6(h.a, h.ifA, `${A6}/64`);
  h.lab.addr6(h.b, h.ifB, `${B6}/64`);
  const serve = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'sink', '--serve', `[${B6}]:7201`, '--bind', B6, '--json']);
  let out = '';
  let err = '';
  serve.stdout!.on('data', (d) => (out += d));
  serve.stderr!.on('data', (d) => (err += d));
  assert.ok(await waitFor(() => /"event":"serving"/.test(out), 10000), `sink --serve did not start: ${err}`);
  assert.equal(JSON.parse(out.split('\n')[0]).control, `[${B6}]:7201`);

  // The control client in A: open a trial on UDP 9301, wait until blast is done (the file `go`), close it, print the report.
  const go = join(mkdtempSync(join(tmpdir(), 'rawpoll-serve6-')), 'go');
  const client = h.lab.spawn(h.a, [process.execPath, '--input-type=module', '-e', `
    const { ControlClient } = await import(process.argv[1]);
    const c = await ControlClient.connect(process.argv[2], 7201);
    const t = await c.open({ port: 9301, expect: 1000 });
    console.log('open ' + t);
    const { existsSync } = await import('node:fs');
    while (!existsSync(process.argv[3])) await new Promise((r) => setTimeout(r, 20));
    const r = await c.close(t);
    console.log(JSON.stringify(r));
    await c.end();`,
  pathToFileURL(resolve(ROOT, 'dist', 'src', 'exp', 'control.js')).href, B6, go]);
  let cout = '';
  let cerr = '';
  client.stdout!.on('data', (d) => (cout += d));
  client.stderr!.on('data', (d) => (cerr += d));
  assert.ok(await waitFor(() => /^open \d+\n/.test(cout), 10000), `control client: ${cout} ${cerr}`);
  const bl = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `[${B6}]:9301`, '--sport', '4000', '--count', '1000', '--rate', '5000pps', '--json']);
  assert.equal(bl.code, 0, bl.stderr);
  writeFileSync(go, '');
  assert.ok(await waitFor(() => cout.split('\n').filter(Boolean).length >= 2, 10000), `no report: ${cout} ${cerr}`);
  const r = JSON.parse(cout.split('\n')[1]) as { report: { totals: { received: number; lost: number }; flows: { src: string; dst: string }[] } };
  assert.deepEqual([r.report.totals.received, r.report.totals.lost], [1000, 0]);
  assert.deepEqual([r.report.flows[0].src, r.report.flows[0].dst], [`[${A6}]:4000`, `[${B6}]:9301`]);

  serve.kill('SIGTERM');
  assert.deepEqual(await exitOf(serve), { code: 0, signal: null }, err);
  const events = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; client?: string });
  assert.deepEqual(events.map((e) => e.event), ['serving', 'trial-opened', 'trial-closed', 'stopped']);
  assert.match(events[1].client!, new RegExp(`^\\[${A6}\\]:\\d+$`), 'the client as [addr]:port');
  rmSync(dirname(go), { recursive: true, force: true });
});
