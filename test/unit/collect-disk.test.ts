/**
 * The collector's write-failure paths without a full disk: a rename onto a directory, /dev/full (every write there
 * fails with ENOSPC, the kernel's own full-disk error) and temp files named for processes that are gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atomicWrite, DiskWatch, OopsCollector, removeStaleTemps, type OopsEvent } from '../../src/rx/oopscollect.js';
import { NetconsoleCollector } from '../../src/rx/nclog.js';
import { oopsDatagrams } from '../helpers/netoops.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'rawpoll-disk-'));
}

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

/** A pid no process has: a child that ran and was reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

test('atomicWrite: a failed rename leaves no temp file behind and passes the error on', async () => {
  const dir = tempDir();
  try {
    const target = join(dir, 'x.log');
    mkdirSync(target); // rename(file, non-empty directory) fails
    writeFileSync(join(target, 'inside'), 'x');
    await assert.rejects(atomicWrite(target, Buffer.from('data')), /EISDIR|ENOTEMPTY|EEXIST/);
    assert.deepEqual(readdirSync(dir), ['x.log']);
    await atomicWrite(join(dir, 'y.log'), Buffer.from('data'));
    assert.deepEqual(readdirSync(dir).sort(), ['x.log', 'y.log']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DiskWatch: one disk-full per episode, a write-error when the reason changes, write-resumed with the losses', () => {
  const events: OopsEvent[] = [];
  const w = new DiskWatch('/d', (e) => events.push(e));
  w.ok();
  assert.equal(events.length, 0, 'no episode, nothing to say');
  for (let i = 0; i < 500; i++) w.failed(enospc(), '/d/a.log', { records: 1, bytes: 100 });
  w.failed(enospc(), '/d/oops.log', { dumps: 1 });
  assert.deepEqual(events.map((e) => e.event), ['disk-full']);
  assert.equal(events[0].file, '/d/a.log');
  assert.match(String(events[0].error), /^ENOSPC: no space left on device/);
  assert.equal(w.failing, true);
  w.ok();
  w.ok();
  assert.deepEqual(events.map((e) => e.event), ['disk-full', 'write-resumed']);
  assert.equal(events[1].lost_records, 500);
  assert.equal(events[1].lost_bytes, 50000);
  assert.equal(events[1].lost_dumps, 1);
  assert.equal(events[1].lost_sidecars, undefined);
  w.failed(enospc(), '/d/a.log', { records: 1 });
  w.failed(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }), '/d/a.log', { records: 1 });
  w.failed(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }), '/d/a.log', { records: 1 });
  w.ok();
  assert.deepEqual(events.map((e) => e.event), ['disk-full', 'write-resumed', 'disk-full', 'write-error', 'write-resumed']);
  assert.equal(events[4].lost_records, 3);
  assert.deepEqual(w.totals, { episodes: 3, dumps: 1, sidecars: 0, records: 503, bytes: 50000 });
});

test('netconsole receiver on a device that is always full (/dev/full): one disk-full, then write-resumed', async () => {
  const dir = tempDir();
  const events: OopsEvent[] = [];
  const nc = new NetconsoleCollector({ dir, onEvent: (e) => events.push(e) });
  try {
    symlinkSync('/dev/full', nc.logPath('10.0.0.1'));
    for (let i = 0; i < 200; i++) nc.handle(Buffer.from(`line ${i}\n`), { address: '10.0.0.1', port: 6666 });
    assert.deepEqual(events.filter((e) => e.event !== 'new-host').map((e) => e.event), ['disk-full']);
    assert.equal(nc.stats.notWritten, 200);
    nc.handle(Buffer.from('fine\n'), { address: '10.0.0.2', port: 6666 });
    const resumed = events.filter((e) => e.event === 'write-resumed');
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0].lost_records, 200);
    assert.equal(readFileSync(nc.logPath('10.0.0.2'), 'utf8'), 'fine\n');
  } finally {
    await nc.close();
    rmSync(dir, { recursive: true, force: true });
  }
});


test('netoops receiver: a dump that cannot be written leaves no temp file, is counted, and the next one lands', async () => {
  const dir = tempDir();
  const events: OopsEvent[] = [];
  const c = new OopsCollector({ dir, onEvent: (e) => events.push(e), idleMs: 60_000 });
  try {
    const from = { address: '10.0.0.9', port: 2004 };
    // The first dump's final name is taken by a directory: its rename fails after the data was written.
    mkdirSync(join(dir, 'oops-10.0.0.9-000000ab-1.log', 'x'), { recursive: true });
    const log = Buffer.from('a crash log\n'.repeat(300));
    for (const d of oopsDatagrams(log, 1, 0xab)) c.handle(d, from);
    await c.flush();
    assert.deepEqual(events.filter((e) => e.event !== 'new-host').map((e) => e.event), ['write-error']);
    assert.deepEqual(readdirSync(dir), ['oops-10.0.0.9-000000ab-1.log'], 'no temp file, no sidecar');
    for (const d of oopsDatagrams(log, 2, 0xab)) c.handle(d, from);
    await c.flush();
    const tail = events.filter((e) => e.event !== 'new-host').map((e) => e.event);
    assert.deepEqual(tail, ['write-error', 'write-resumed', 'dump-complete']);
    assert.equal(events.find((e) => e.event === 'write-resumed')!.lost_dumps, 1);
    assert.deepEqual(readFileSync(join(dir, 'oops-10.0.0.9-000000ab-2.log')), log);
    assert.equal(c.stats.dumpsComplete, 1, 'the lost dump is not counted as written');
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('removeStaleTemps: removes temp files of dead pids only, nothing else', async () => {
  const dir = tempDir();
  try {
    const dead = deadPid();
    const names = {
      stale: `.oops-10.0.0.1-00000001-1.log.tmp-${dead}`,
      staleJson: `.oops-10.0.0.1-00000001-1.json.tmp-${dead}`,
      live: `.oops-10.0.0.1-00000001-2.log.tmp-${process.ppid}`,
      mine: `.oops-10.0.0.1-00000001-3.log.tmp-${process.pid}`,
      other: '.notours.tmp-abc',
      visible: `oops-10.0.0.1-00000001-1.log`,
    };
    for (const n of Object.values(names)) writeFileSync(join(dir, n), 'x'.repeat(1000));
    mkdirSync(join(dir, `.adir.tmp-${dead}`));
    const r = await removeStaleTemps(dir);
    assert.deepEqual(r.files.sort(), [names.staleJson, names.stale].sort());
    assert.equal(r.bytes, 2000);
    for (const k of ['live', 'mine', 'other', 'visible'] as const) assert.ok(existsSync(join(dir, names[k])), k);
    assert.ok(existsSync(join(dir, `.adir.tmp-${dead}`)), 'directories are not ours');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
