/**
 * Issue 13, "Dangerous": nothing goes on the wire before every flag, file and path was checked, and `-w` behaves as
 * tcpdump's. Each case: the exit code, one stderr line naming the value (and what is valid), tcpdump on the peer
 * capturing nothing at all (ARP included), and no file created or replaced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsForThisFile, rawpoll, RAWPOLL, startTcpdump, type TwoHostLab } from '../helpers/lab.js';
import { parsePcap } from '../../src/wire/pcapfile.js';

const { tmp, hosts } = labsForThisFile('rawpoll-dangerous-');
let n = 0;
const scratch = (): string => {
  const d = join(tmp, `case${n++}`);
  mkdirSync(d);
  return d;
};

/** tcpdump on B, every frame (no filter: ARP counts); `stop()` ends it and says how many frames it captured. */
async function peerCapture(h: TwoHostLab): Promise<{ stop: () => Promise<number> }> {
  // startTcpdump's --immediate-mode: without it a frame could wait in libpcap's ring block past the SIGINT and never be
  // written, and a run that did send would look silent.
  const td = await startTcpdump(h.lab, h.b, h.ifB, join(tmp, `peer-${n++}.pcap`));
  return { stop: async () => parsePcap(readFileSync(await td.stop())).records.length };
}

/** Runs rawpoll in A with tcpdump on B: returns the result and the frames B saw. */
async function quiet(h: TwoHostLab, args: string[]): Promise<{ code: number | null; stderr: string; stdout: string; frames: number }> {
  const cap = await peerCapture(h);
  const r = rawpoll(h.a, args);
  return { ...r, frames: await cap.stop() };
}

/** rawpoll with no interface and no namespace (pcap output only), in `cwd`. */
function offline(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [RAWPOLL, ...args], { cwd, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

test('the witness: quiet() sees the frames of a run that is allowed (ARP and the datagram), so its zeros below mean silence', async () => {
  const h = hosts();
  const r = await quiet(h, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.frames >= 2, `the peer's capture saw ${r.frames} frames of an allowed send (who-has and the datagram at least)`);
});

const MACS = ['--dst-mac', '02:00:00:00:00:02', '--src-mac', '02:00:00:00:00:01', '--from', '10.9.9.1'];
const SEND = ['send', '--to', '10.9.9.2:9', '--data', 'hi', ...MACS];

test('-w DIR: refused before anything is created or sent (exit 1, one line naming DIR); no DIR.tmp-PID, no DIR/.tmp-PID', async () => {
  const h = hosts();
  const d = scratch();
  const dir = join(d, 'out');
  mkdirSync(dir);
  const r = await quiet(h, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '-w', dir]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`cannot write ${dir}: it is a directory`));
  assert.equal(r.frames, 0, 'frames on the wire (ARP included)');
  assert.deepEqual(readdirSync(d), ['out']);
  assert.deepEqual(readdirSync(dir), []);
});

test('-w DIR/missing/x.pcap: refused before ARP, naming the missing directory', async () => {
  const h = hosts();
  const d = scratch();
  const r = await quiet(h, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '-w', join(d, 'nope', 'x.pcap')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr.trim(), new RegExp(`^rawpoll: cannot write ${d}/nope/x.pcap: directory ${d}/nope does not exist`));
  assert.equal(r.frames, 0);
  assert.deepEqual(readdirSync(d), []);
});

test('-w -: the pcap goes to standard output, the summary to standard error; no file named -', () => {
  const d = scratch();
  const r = offline([...SEND, '-c', '2', '-w', '-'], d);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(parsePcap(r.stdout).records.length, 2);
  assert.match(r.stderr, /2 datagrams .* written to standard output/);
  assert.deepEqual(readdirSync(d), []);
});

test('-w onto a character device (a private mknod c 1 3): written into, never replaced', () => {
  const d = scratch();
  const dev = join(d, 'null');
  assert.equal(spawnSync('mknod', [dev, 'c', '1', '3']).status, 0);
  const before = statSync(dev);
  const r = offline([...SEND, '-w', dev], d);
  assert.equal(r.code, 0, r.stderr);
  const after = lstatSync(dev);
  assert.ok(after.isCharacterDevice(), 'still a character device');
  assert.equal(after.rdev, before.rdev);
  assert.equal(after.ino, before.ino);
  assert.deepEqual(readdirSync(d), ['null']);
});

test('-w onto a FIFO read by cat: the reader gets the pcap; the FIFO stays a FIFO', async () => {
  const d = scratch();
  const fifo = join(d, 'ff');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const cat = spawn('cat', [fifo]);
  const chunks: Buffer[] = [];
  cat.stdout.on('data', (c: Buffer) => chunks.push(c));
  const catDone = new Promise((r) => cat.once('close', r));
  const r = offline([...SEND, '-c', '3', '--pcap-nano', '-w', fifo], d);
  assert.equal(r.code, 0, r.stderr);
  await catDone;
  const got = Buffer.concat(chunks);
  assert.equal(got.readUInt32LE(0), 0xa1b23c4d, 'nanosecond pcap magic');
  assert.equal(got.length, 24 + 3 * (16 + 60));
  assert.ok(lstatSync(fifo).isFIFO());
  assert.deepEqual(readdirSync(d), ['ff']);
});

test('-w FILE: an existing regular file is replaced whole (temp then rename), nothing else left; tcpdump reads it', () => {
  const d = scratch();
  const f = join(d, 'out.pcap');
  writeFileSync(f, 'old');
  const r = offline([...SEND, '-c', '2', '-w', f], d);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(d), ['out.pcap']);
  const t = spawnSync('tcpdump', ['-r', f, '-nn']);
  assert.equal(t.stdout.toString().trim().split('\n').length, 2, t.stderr.toString());
  assert.ok(existsSync(f));
  rmSync(f);
});

const BLAST = ['blast', '--to', '10.9.9.2:9', ...MACS];

test('blast -w -: the frames blast would send, as a pcap on standard output, no NIC, no root needed; --pcap-nano', () => {
  const d = scratch();
  const r = offline([...BLAST, '--flows', '2', '--sport', '100-101', '--count', '5', '-w', '-'], d);
  assert.equal(r.code, 0, r.stderr);
  const recs = parsePcap(r.stdout).records;
  assert.equal(recs.length, 5);
  assert.deepEqual(recs.map((x) => x.data.readUInt16BE(34)), [100, 101, 100, 101, 100], 'UDP source ports, flow by flow');
  assert.match(r.stderr, /5 frames, .* written to standard output/);
  const f = join(d, 'b.pcap');
  const n = offline([...BLAST, '--count', '3', '--size', '128', '--pcap-nano', '-w', f], d);
  assert.equal(n.code, 0, n.stderr);
  const b = readFileSync(f);
  assert.equal(b.readUInt32LE(0), 0xa1b23c4d);
  const t = spawnSync('tcpdump', ['-r', f, '-nn', '--time-stamp-precision', 'nano']);
  const lines = t.stdout.toString().trim().split('\n');
  assert.equal(lines.length, 3, t.stderr.toString());
  assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{9} IP 10\.9\.9\.1\.9 > 10\.9\.9\.2\.9: UDP, length 86$/);
  assert.deepEqual(readdirSync(d), ['b.pcap']);
});

test('blast -w without --count or --duration, or without the addresses: exit 2, nothing created', () => {
  const d = scratch();
  const f = join(d, 'x.pcap');
  const r = offline([...BLAST, '-w', f], d);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), 'rawpoll: blast -w needs an end: give --count N or --duration TIME');
  const r2 = offline(['blast', '--to', '10.9.9.2:9', '--count', '1', '-w', f], d);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /--dst-mac, --src-mac and --from/);
  assert.deepEqual(readdirSync(d), []);
});

for (const size of ['59', '99999', '1515']) {
  test(`blast --size ${size}: exit 2 naming it and 60-1514 (MTU 1500) before ARP; nothing on the wire`, async () => {
    const h = hosts();
    const r = await quiet(h, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '1', '--size', size]);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`^rawpoll: bad --size '${size}': .*expected 60-1514 bytes .*${h.ifA} \\(MTU 1500\\)`));
    assert.equal(r.frames, 0, 'frames on the wire (ARP included)');
  });
}

test('blast --rate 100000000000000000000pps (in digits): exit 2 naming it and the ceiling; nothing on the wire', async () => {
  const h = hosts();
  const rate = '100000000000000000000pps';
  const r = await quiet(h, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '3', '--rate', rate]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, new RegExp(`^rawpoll: bad --rate '${rate}': .* above 1 Gpps`));
  assert.equal(r.frames, 0);
});

test('netconsole --follow DIR: exit 2 naming the path before ARP; nothing on the wire', async () => {
  const h = hosts();
  const d = scratch();
  const r = await quiet(h, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--follow', d]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim(), `rawpoll: bad --follow '${d}': it is a directory; expected a file to follow (a log file, even one not yet created)`);
  assert.equal(r.frames, 0);
  assert.deepEqual(readdirSync(d), []);
});

test('netdump --port 0: exit 2 naming it and 1-65535 before ARP or a herald; nothing on the wire', async () => {
  const h = hosts();
  const d = scratch();
  const f = join(d, 'core');
  writeFileSync(f, 'x'.repeat(1000));
  const r = await quiet(h, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', f, '--port', '0']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim(), "rawpoll: bad --port '0': expected the server's herald port 1-65535 (netdumpd: 20023)");
  assert.equal(r.frames, 0);
});

/** rawpoll in a private mount namespace where `ro` is a read-only bind mount of itself (root writes nowhere in it). */
function withReadOnly(ro: string, args: string[]) {
  const q = (x: string) => `'${x.replace(/'/g, "'\\''")}'`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
    `mount --bind -o ro ${q(ro)} ${q(ro)} && exec ${q(process.execPath)} ${q(RAWPOLL)} ${args.map(q).join(' ')}`], { timeout: 10000 });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

for (const cmd of [['collect', '--netconsole', '0'], ['netdump-server', '--port', '0']]) {
  test(`${cmd[0]} --dir D not writable, or a file: exit 1 (not writable) or 2 (a file) at start-up naming D; never says it listens; nothing left`, () => {
    const d = scratch();
    const ro = join(d, 'ro');
    mkdirSync(ro);
    const r = withReadOnly(ro, [...cmd, '--dir', ro]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim(), `rawpoll: --dir ${ro} is not writable (EROFS); nothing was started`);
    assert.equal(r.stdout, '');
    assert.deepEqual(readdirSync(ro), []);
    if (cmd[0] === 'collect') {
      const deep = join(ro, 'a', 'b');
      const r2 = withReadOnly(ro, [...cmd, '--dir', deep]);
      assert.equal(r2.code, 1, r2.stderr);
      assert.equal(r2.stderr.trim(), `rawpoll: cannot create --dir ${deep}: ${ro} is not writable (EROFS); nothing was started`);
      assert.deepEqual(readdirSync(ro), []);
    }
    const file = join(d, 'file');
    writeFileSync(file, 'keep');
    const r3 = offline([...cmd, '--dir', file], d);
    // The wrong kind of path is bad usage (README, exit codes): 2; refused (EROFS above) is runtime: 1.
    assert.equal(r3.code, 2, r3.stderr);
    assert.equal(r3.stderr.trim(), `rawpoll: bad --dir '${file}': a file, not a directory`);
    assert.equal(readFileSync(file, 'utf8'), 'keep');
    assert.deepEqual(readdirSync(d).sort(), ['file', 'ro']);
  });
}

test('collect --netconsole 6666 --oops 6666: exit 2 before anything is created or bound', () => {
  const d = scratch();
  const dir = join(d, 'c');
  const r = offline(['collect', '--dir', dir, '--netconsole', '6666', '--oops', '6666'], d);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim(), 'rawpoll: --netconsole and --oops both name UDP port 6666: give each its own port (defaults: netconsole 6666, netoops 2004)');
  assert.deepEqual(readdirSync(d), []);
});

test('netconsole -w -: the pcap alone on standard output (events and summary on standard error); -w with two --config targets refused', () => {
  const d = scratch();
  const r = spawnSync(process.execPath, [RAWPOLL, 'netconsole', '--to', '10.9.9.2', ...MACS, '-w', '-', '--json'], { cwd: d, input: 'a\nb\n' });
  assert.equal(r.status, 0, r.stderr.toString());
  const udpPayload = (f: Buffer) => f.subarray(42, 34 + f.readUInt16BE(38)).toString();
  assert.deepEqual(parsePcap(r.stdout).records.map((x) => udpPayload(x.data)), ['a\n', 'b\n']);
  assert.match(r.stderr.toString(), /"event":"summary"/);
  const two = offline(['netconsole', '--config', '@10.9.9.1/lo,@10.9.9.2/02:00:00:00:00:02;@10.9.9.1/lo,@10.9.9.3/02:00:00:00:00:03', '-w', '-'], d);
  assert.equal(two.code, 2, two.stderr);
  assert.equal(two.stderr.trim(), 'rawpoll: -w - takes one target, --config names 2: write one pcap per run');
  assert.deepEqual(readdirSync(d), []);
});
