// tx/netconsole.ts without a NIC: targets send on recording Links (no root); lines come from an in-memory stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { release } from 'node:os';
import { Readable } from 'node:stream';
import { LinkDownError, LinkGoneError } from '../../src/errors.js';
import { parseExtDatagram } from '../../src/proto/netconsole.js';
import { runNetconsole, type NetconsoleTargetOptions } from '../../src/tx/netconsole.js';
import { parseMac } from '../../src/wire/mac.js';
import { RecordingLink } from '../helpers/recordlink.js';

const SRC = 0x0a000007;

function target(link: RecordingLink, dstIp: number, extended = false, release = false): NetconsoleTargetOptions {
  return {
    sender: {
      link, dstMac: parseMac('02:00:00:00:00:09'), srcMac: parseMac('02:00:00:00:00:07'), from: { ip: SRC }, srcPort: 6665,
      to: { ip: dstIp, port: 6666 },
    },
    extended, release,
  };
}

const lines = (...ls: string[]) => Readable.from([Buffer.from(ls.join('\n') + '\n')]);

test('runNetconsole: each target gets its format (basic; extended with release), the summary counts them, "ready" first', async () => {
  const basic = new RecordingLink();
  const ext = new RecordingLink();
  const events: Array<Record<string, unknown>> = [];
  const s = await runNetconsole({
    targets: [target(basic, 0x0a000009), target(ext, 0x0a00000a, true, true)],
    input: { kind: 'lines', stream: lines('one', 'x'.repeat(1500)) }, level: 3,
    event: (e) => events.push(e),
  });
  assert.equal(events[0].event, 'ready');
  assert.equal(events[0].source, 'stdin');
  // basic: the text and its newline, at most 1000 bytes per datagram (write_msg)
  assert.deepEqual(basic.udp().map((u) => u.payload.length), [4, 1000, 501]);
  assert.equal(basic.udp()[0].payload.toString(), 'one\n');
  // extended: <release>,<prio>,<seq>,<usec>,<flag>;text\n, the long one in ncfrag pieces
  const e = ext.udp().map((u) => parseExtDatagram(u.payload)!);
  assert.equal(e[0].release, release());
  assert.equal(e[0].level, 3);
  assert.equal(e[0].seq, 0);
  assert.equal(e[0].body.toString(), 'one\n');
  assert.ok(e.length > 2 && e.slice(1).every((d) => d.seq === 1 && d.frag !== null));
  assert.deepEqual(ext.udp().map((u) => [u.srcPort, u.dstPort]), ext.udp().map(() => [6665, 6666]));
  assert.equal(s.messages, 2);
  assert.equal(s.datagrams, 3 + e.length);
  assert.equal(s.stopped, 'end of input');
  assert.equal(s.interrupted, null);
  assert.equal(s.gone, null);
  assert.deepEqual(s.targets.map((t) => [t.dst, t.datagrams, t.notSentLinkDown]), [['10.0.0.9:6666', 3, 0], ['10.0.0.10:6666', e.length, 0]]);
  assert.ok(basic.closed && ext.closed);
});

test('runNetconsole: userdata and sysdata follow every extended message, in the kernel\'s order', async () => {
  const link = new RecordingLink();
  await runNetconsole({
    targets: [target(link, 0x0a000009, true)], input: { kind: 'lines', stream: lines('a', 'b') }, userdata: [['dc', 'fra1']],
    sysdata: new Set(['release', 'msgid'] as const),
  });
  assert.deepEqual(link.udp().map((u) => parseExtDatagram(u.payload)!.body.toString()),
    [`a\n dc=fra1\n release=${release()}\n msgid=1\n`, `b\n dc=fra1\n release=${release()}\n msgid=2\n`]);
});

test('runNetconsole --count: stops after N messages', async () => {
  const link = new RecordingLink();
  const s = await runNetconsole({ targets: [target(link, 0x0a000009)], input: { kind: 'lines', stream: lines('a', 'b', 'c', 'd') }, count: 2 });
  assert.equal(s.stopped, 'count');
  assert.equal(s.messages, 2);
  assert.deepEqual(link.udp().map((u) => u.payload.toString()), ['a\n', 'b\n']);
});

test('runNetconsole: an interrupt ends the run with its reason; subscribed only once the targets are open', async () => {
  let stop: ((reason: string) => void) | null = null;
  let unsubscribed = false;
  const link = new RecordingLink((i) => {
    if (i === 1) stop!('SIGTERM');
    return null;
  });
  async function* slow() {
    for (const l of ['a', 'b', 'c', 'd']) {
      yield Buffer.from(l + '\n');
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const s = await runNetconsole({
    targets: [target(link, 0x0a000009)], input: { kind: 'lines', stream: Readable.from(slow()) },
    interrupt: (st) => { stop = st; return () => { unsubscribed = true; }; },
  });
  assert.equal(s.stopped, 'SIGTERM');
  assert.equal(s.interrupted, 'SIGTERM');
  assert.equal(s.messages, 2);
  assert.ok(unsubscribed);
});

test('runNetconsole: a link that is down queues, and what is still queued at the end is counted as not sent', async () => {
  const link = new RecordingLink((i) => (i === 1 ? new LinkDownError('rec0') : null));
  const s = await runNetconsole({ targets: [target(link, 0x0a000009)], input: { kind: 'lines', stream: lines('a', 'b', 'c') }, linkQueue: 1 });
  // 'b' met the down link and waited; 'c' queued behind it (order is kept) and pushed it out of a queue of 1.
  assert.deepEqual(link.udp().map((u) => u.payload.toString()), ['a\n']);
  assert.deepEqual(s.targets.map((t) => [t.datagrams, t.queuedWhileDown, t.droppedQueueFull, t.notSentLinkDown]), [[1, 2, 1, 1]]);
  assert.equal(s.datagrams, 3);
  assert.equal(s.stopped, 'end of input');
});

test('runNetconsole: an interface gone ends the run, named in the summary', async () => {
  const link = new RecordingLink((i) => (i === 1 ? new LinkGoneError('rec0') : null));
  const s = await runNetconsole({ targets: [target(link, 0x0a000009)], input: { kind: 'lines', stream: lines('a', 'b', 'c') } });
  assert.equal(s.gone, 'rec0');
  assert.equal(s.stopped, 'interface rec0 disappeared');
  assert.equal(s.targets[0].datagrams, 1);
});

test('runNetconsole: userdata on a basic target is refused before anything is opened', async () => {
  const link = new RecordingLink();
  await assert.rejects(runNetconsole({ targets: [target(link, 0x0a000009)], input: { kind: 'lines', stream: lines('a') }, userdata: [['k', 'v']] }),
    /need the extended format/);
  assert.equal(link.sends, 0);
});
