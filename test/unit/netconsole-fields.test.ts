// The newer kernel netconsole fields: release prefix ('r', 6.5+), configfs userdata (6.9+) and sysdata cpu (6.14),
// taskname and release (6.15), msgid (6.16). Vectors are written out by hand from the format strings of
// drivers/net/netconsole.c (send_msg_no_fragmentation, send_fragmented_body, sysdata_append_*: " cpu=%u\n",
// " taskname=%s\n", " release=%s\n", " msgid=%u\n"; update_userdata: " %s=%s\n") and the examples of
// Documentation/networking/netconsole.rst — never produced by the code under test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetconsoleCollector, type CollectorEvent } from '../../src/rx/nclog.js';
import {
  parseExtMessage, emitExtMessage, extendedDatagrams, parseExtDatagram, NcfragReassembler, NetconsoleFormatter,
  MAX_PRINT_CHUNK, type ExtMessage,
} from '../../src/proto/netconsole.js';

/** netconsole.rst, "Release prepend": the kernel release, a comma, then the extended record. */
const RELEASE_VEC = '6.4.0,6,444,501151268,-;netconsole: network logging started\n';
/** netconsole.rst, "Userdata": two configfs entries appended. */
const USERDATA_VEC = '12,607,22085407756,-;This is a message\n foo=bar\n qux=baz\n';
/** Everything at once, as a 6.16+ kernel with 'r', a dev_printk record, userdata and all four sysdata fields sends it. */
const ALL_VEC = '6.17.0-rc1,4,90,123456789,-,caller=T812;e1000e 0000:00:19.0 eth0: NIC Link is Up \\x5cok\\x5c\n' +
  ' SUBSYSTEM=pci\n DEVICE=+pci:0000:00:19.0\n dc=fra1\n rack=b12\n cpu=3\n taskname=kworker/3:1\n release=6.17.0-rc1\n msgid=4294967295\n';

const ALL: ExtMessage = {
  release: '6.17.0-rc1', facility: 0, level: 4, seq: 90, usec: 123456789, cont: false, headerExtra: ['caller=T812'],
  text: Buffer.from('e1000e 0000:00:19.0 eth0: NIC Link is Up \\ok\\'),
  dict: [['SUBSYSTEM', 'pci'], ['DEVICE', '+pci:0000:00:19.0']],
  userdata: [['dc', 'fra1'], ['rack', 'b12']],
  sysdata: { cpu: 3, taskname: 'kworker/3:1', release: '6.17.0-rc1', msgid: 4294967295 },
  rest: Buffer.alloc(0),
};

test('fields: deconstruct — every part of the full vector', () => {
  const m = parseExtMessage(Buffer.from(ALL_VEC))!;
  assert.equal(m.release, '6.17.0-rc1');
  assert.equal(m.facility, 0);
  assert.equal(m.level, 4);
  assert.equal(m.seq, 90);
  assert.equal(m.usec, 123456789);
  assert.equal(m.cont, false);
  assert.deepEqual(m.headerExtra, ['caller=T812']);
  assert.equal(m.text.toString(), 'e1000e 0000:00:19.0 eth0: NIC Link is Up \\ok\\');
  assert.deepEqual(m.dict, [['SUBSYSTEM', 'pci'], ['DEVICE', '+pci:0000:00:19.0']]);
  assert.deepEqual(m.userdata, [['dc', 'fra1'], ['rack', 'b12']]);
  assert.deepEqual(m.sysdata, { cpu: 3, taskname: 'kworker/3:1', release: '6.17.0-rc1', msgid: 4294967295 });
  assert.equal(m.rest.length, 0);
});

test('fields: parse and emit are each other\'s inverse on the vectors', () => {
  assert.deepEqual(parseExtMessage(Buffer.from(ALL_VEC)), ALL);
  assert.equal(emitExtMessage(ALL).toString('latin1'), ALL_VEC);
  for (const v of [RELEASE_VEC, USERDATA_VEC, ALL_VEC, '6,1,2,c;x\n', '6,1,2,-;no newline']) {
    const m = parseExtMessage(Buffer.from(v))!;
    assert.ok(m, v);
    assert.equal(emitExtMessage(m).toString('latin1'), v.endsWith('\n') ? v : v + '\n', v);
  }
});

test('fields: the documentation examples', () => {
  const r = parseExtMessage(Buffer.from(RELEASE_VEC))!;
  assert.equal(r.release, '6.4.0');
  assert.equal(r.seq, 444);
  assert.equal(r.text.toString(), 'netconsole: network logging started');
  assert.deepEqual([r.userdata, r.sysdata, r.dict], [[], {}, []]);
  const u = parseExtMessage(Buffer.from(USERDATA_VEC))!;
  assert.equal(u.release, null);
  assert.equal(u.facility, 1);   // 12 = user.warning: written to /dev/kmsg from user space
  assert.equal(u.level, 4);
  assert.deepEqual(u.userdata, [['foo', 'bar'], ['qux', 'baz']]);
  assert.deepEqual(u.sysdata, {});
});

test('fields: construct — emit from parts into the exact bytes', () => {
  const m: ExtMessage = {
    release: null, facility: 0, level: 6, seq: 7, usec: 8, cont: false, headerExtra: [], text: Buffer.from('tab\there'),
    dict: [], userdata: [['k', 'v w']], sysdata: { msgid: 1, cpu: 0 }, rest: Buffer.alloc(0),
  };
  // sysdata in the kernel's order whatever the object's key order; the tab escaped as printk does.
  assert.equal(emitExtMessage(m).toString(), '6,7,8,-;tab\\x09here\n k=v w\n cpu=0\n msgid=1\n');
});

test('fields: userdata vs sysdata when the wire does not say', () => {
  // A userdata key named like a sysdata field but not in the trailing run stays userdata.
  const a = parseExtMessage(Buffer.from('6,1,2,-;x\n cpu=1\n dc=a\n msgid=5\n'))!;
  assert.deepEqual(a.userdata, [['cpu', '1'], ['dc', 'a']]);
  assert.deepEqual(a.sysdata, { msgid: 5 });
  // Out of the kernel's order: only the last one is sysdata.
  const b = parseExtMessage(Buffer.from('6,1,2,-;x\n msgid=5\n cpu=1\n'))!;
  assert.deepEqual(b.userdata, [['msgid', '5']]);
  assert.deepEqual(b.sysdata, { cpu: 1 });
  // A value not of the field's form is userdata (cpu must be a number, taskname at most 15 characters).
  const c = parseExtMessage(Buffer.from('6,1,2,-;x\n cpu=first\n taskname=a-very-long-task-name\n'))!;
  assert.deepEqual(c.userdata, [['cpu', 'first'], ['taskname', 'a-very-long-task-name']]);
  assert.deepEqual(c.sysdata, {});
  // Lines that are not ` KEY=value` end the parsing; they are kept verbatim.
  const d = parseExtMessage(Buffer.from('6,1,2,-;x\n k=v\ngarbage\n'))!;
  assert.deepEqual(d.userdata, [['k', 'v']]);
  assert.equal(d.rest.toString(), 'garbage\n');
  assert.equal(emitExtMessage(d).toString(), '6,1,2,-;x\n k=v\ngarbage\n');
  // Not extended, or a fragment: not a whole message.
  assert.equal(parseExtMessage(Buffer.from('plain line\n')), null);
  assert.equal(parseExtMessage(Buffer.from('6,1,2,-,ncfrag=0/10;x')), null);
});

test('fields: fragmented with release, userdata and sysdata — every piece carries the release, data = body + userdata + sysdata', () => {
  const text = 'y'.repeat(1500);
  const extradata = Buffer.from(' dc=fra1\n cpu=1\n msgid=9\n');
  const pieces = extendedDatagrams(Buffer.from(`6,5,77,-;${text}\n`), { release: '6.15.0', extradata });
  // data = 1500 + "\n" + 25 = 1526 bytes; header "6.15.0,6,5,77,-" then ",ncfrag=<off>/1526;".
  assert.equal(pieces.length, 2);
  const h0 = '6.15.0,6,5,77,-,ncfrag=0/1526;';
  assert.equal(pieces[0].toString(), h0 + 'y'.repeat(MAX_PRINT_CHUNK - h0.length));
  const off = MAX_PRINT_CHUNK - h0.length;
  assert.equal(pieces[1].toString(), `6.15.0,6,5,77,-,ncfrag=${off}/1526;` + 'y'.repeat(1500 - off) + '\n dc=fra1\n cpu=1\n msgid=9\n');
  const r = new NcfragReassembler();
  r.add('h', parseExtDatagram(pieces[1])!);
  const done = r.add('h', parseExtDatagram(pieces[0])!);
  assert.equal(done.kind, 'complete');
  const m = parseExtMessage(done.kind === 'complete' ? done.record.bytes : Buffer.alloc(0))!;
  assert.equal(m.release, '6.15.0');
  assert.equal(m.text.toString(), text);
  assert.deepEqual(m.userdata, [['dc', 'fra1']]);
  assert.deepEqual(m.sysdata, { cpu: 1, msgid: 9 });
});

test('fields: what rawpoll netconsole sends (release, userdata, sysdata, msgid counting from 1) parses back', () => {
  const f = new NetconsoleFormatter({
    extended: true, release: '6.16.2', userdata: [['role', 'db']],
    sysdata: { cpu: () => 2, taskname: 'rawpoll', release: '6.16.2', msgid: true }, level: 3, facility: 0,
  });
  const msgs = [f.line(Buffer.from('one'), 10), f.line(Buffer.from('two'), 20)].map((d) => parseExtMessage(d[0])!);
  assert.deepEqual(msgs.map((m) => [m.release, m.level, m.seq, m.text.toString(), m.userdata, m.sysdata]), [
    ['6.16.2', 3, 0, 'one', [['role', 'db']], { cpu: 2, taskname: 'rawpoll', release: '6.16.2', msgid: 1 }],
    ['6.16.2', 3, 1, 'two', [['role', 'db']], { cpu: 2, taskname: 'rawpoll', release: '6.16.2', msgid: 2 }],
  ]);
});

test('fields in collect: records stored verbatim with them; new-host and seq-restart name the release; each record passed on once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rp-ncfields-'));
  const events: CollectorEvent[] = [];
  const passed: Array<[string, number]> = [];
  const c = new NetconsoleCollector({
    dir, onEvent: (e) => events.push(e),
    onRecord: (rec, from, frags) => { passed.push([rec.toString('latin1'), frags]); return passed.length === 2 ? 'syslog_busy' : null; },
  });
  const from = { address: '10.9.0.7', port: 6665 };
  try {
    const pieces = extendedDatagrams(Buffer.from(`6,1,77,-;${'z'.repeat(1200)}\n`), { release: '6.15.0', extradata: Buffer.from(' dc=fra1\n cpu=1\n') });
    c.handle(Buffer.from(RELEASE_VEC), from);                          // seq 444
    for (const p of pieces.reverse()) c.handle(p, from);                 // seq 1, two pieces out of order
    c.handle(Buffer.from('6.16.0,6,0,5,-;booted again\n msgid=1\n'), from);   // seq 0 again: a reboot, a new kernel
    await c.close();
    const whole = `6.15.0,6,1,77,-;${'z'.repeat(1200)}\n dc=fra1\n cpu=1\n`;
    assert.equal(readFileSync(join(dir, 'netconsole', '10.9.0.7.log'), 'latin1'), RELEASE_VEC + whole + '6.16.0,6,0,5,-;booted again\n msgid=1\n');
    assert.deepEqual(events.filter((e) => e.event === 'new-host').map((e) => e.release), ['6.4.0']);
    assert.deepEqual(events.filter((e) => e.event === 'seq-restart').map((e) => [e.got, e.release]), [[0, '6.16.0']]);
    assert.deepEqual(passed.map(([r, f]) => [r.slice(0, 16), f]), [[RELEASE_VEC.slice(0, 16), 1], [whole.slice(0, 16), 2], ['6.16.0,6,0,5,-;b', 1]]);
    assert.equal(passed[1][0], whole);
    assert.equal(c.drops.syslog_busy, 1);
    assert.equal(c.stats.dropped, 0, 'a record the log has is not a dropped record');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
