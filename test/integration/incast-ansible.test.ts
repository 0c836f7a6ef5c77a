/**
 * The Ansible incast playbook users copy (examples/ansible/incast.yml), run for real by Debian's ansible-core against
 * sender namespaces on this machine: lab.ini names three senders and a receiver, all `ansible_connection=local` with a
 * `netns` host var, so every task runs its command under `ip netns exec`. Between them a bridge namespace shapes its
 * port toward the receiver with `tbf rate 4mbit burst 16000 limit 32000`: a buffer whose truth the test sets. tbf
 * charges a frame its skb->len, blast's --size (no FCS), so 1000-byte frames pass (16000 + 32000) / 1000 = 48 at once,
 * plus what the rate forwards while they arrive; the playbook subtracts that (its egress_rate × the burst's arrival
 * span) and must report burst + limit within ±20%. The rate is low (500 frames/s) so that the senders' scheduling on
 * this 2-CPU VM (their first frames up to 5 ms apart: max_skew_ms) moves the drain correction by 2.5 frames at most.
 * Loss: the playbook counts a trial's loss as frames the senders sent minus those the sink received. Over the whole
 * sweep that must equal tbf's drop counter: in each trial loss ≥ tbf's drops (nothing else adds frames: no duplicates),
 * so equal sums mean equal counts in every trial, the too-long ones included.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab, must, RAWPOLL, ROOT, qdiscDrops } from '../helpers/lab.js';

const RATE_BPS = 4e6;
const BURST = 16000;
const LIMIT = 32000;
const SIZE = 1000;
const SENDERS = 3;
const MAX_FRAMES = 96; // the sweep's first trial: 96 000 bytes, twice what tbf holds
const LAB_NET = '10.97.0';

interface Trial { frames: number; void: string | null; sent: number; received: number; lost: number; flows: number; duplicates: number; spanUs: number; drainedFrames: number }
interface Result {
  senders: number;
  frameSize: number;
  egressPps: number;
  largestLossFree: Trial | null;
  smallestLossy: Trial | null;
  bufferFrames: number | null;
  bufferBytes: number | null;
  trials: Trial[];
  notes: string[];
}

/** ansible-playbook, installing Debian's ansible-core first if it is missing (as scripts/bootstrap does). */
function ansiblePlaybook(): string | null {
  const which = () => spawnSync('sh', ['-c', 'command -v ansible-playbook']).stdout?.toString().trim() || null;
  let found = which();
  if (!found && spawnSync('sh', ['-c', 'command -v apt-get']).status === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'ansible-core'], { env, stdio: 'ignore' }).status;
    if (install() !== 0 && spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' }).status === 0) install();
    found = which();
  }
  return found;
}

const playbook = ansiblePlaybook();
let lab: Lab;
let sw: string;
let port: string; // the bridge port toward the receiver, where tbf sits
const tmp = mkdtempSync(join(tmpdir(), 'rawpoll-incast-ansible-'));

function tbfDrops(): number {
  return qdiscDrops(sw, port);
}

before(() => {
  if (!playbook) return;
  lab = new Lab('ia');
  // Names as lab.ini spells them: {{ lab }}s1… for the senders' namespaces and interfaces, {{ lab }}rx the receiver's.
  sw = lab.ns('sw');
  const rx = lab.ns('rx');
  port = `${lab.tag}pr`;
  must('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
  must('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
  lab.veth(rx, `${lab.tag}rx`, sw, port);
  must('ip', ['-n', sw, 'link', 'set', port, 'master', 'br0']);
  lab.addr(rx, `${lab.tag}rx`, `${LAB_NET}.100/24`);
  for (let i = 1; i <= SENDERS; i++) {
    const s = lab.ns(`s${i}`);
    lab.veth(s, `${lab.tag}s${i}`, sw, `${lab.tag}p${i}`);
    must('ip', ['-n', sw, 'link', 'set', `${lab.tag}p${i}`, 'master', 'br0']);
    lab.addr(s, `${lab.tag}s${i}`, `${LAB_NET}.${i}/24`);
  }
  must('tc', ['-n', sw, 'qdisc', 'add', 'dev', port, 'root', 'tbf', 'rate', `${RATE_BPS / 1e6}mbit`, 'burst', String(BURST), 'limit', String(LIMIT)]);
});

after(() => {
  lab?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

function runPlaybook(extra: Record<string, unknown>): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    // Ansible's own files (temp dirs, fact cache) go to our temp dir, not root's home.
    const env = {
      ...process.env, ANSIBLE_HOME: join(tmp, 'home'), ANSIBLE_LOCAL_TEMP: join(tmp, 'local'), ANSIBLE_REMOTE_TEMP: join(tmp, 'remote'),
      ANSIBLE_NOCOLOR: '1', ANSIBLE_RETRY_FILES_ENABLED: 'false',
    };
    const p = spawn(playbook!, ['-i', 'lab.ini', 'incast.yml', '-e', JSON.stringify(extra)],
      { cwd: resolve(ROOT, 'examples', 'ansible'), env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const guard = setTimeout(() => p.kill('SIGTERM'), 150_000);
    p.on('close', (code) => {
      clearTimeout(guard);
      res({ code, out });
    });
  });
}

test('ansible incast playbook: the loss-free incast burst implies tbf\'s burst + limit within ±20%, loss = tbf drops',
  { timeout: 180_000, skip: playbook ? false : 'ansible-playbook is missing and apt-get could not install ansible-core (scripts/bootstrap installs it)' },
  async () => {
    const resultFile = join(tmp, 'incast.json');
    const drops0 = tbfDrops();
    const t0 = Date.now();
    const r = await runPlaybook({
      lab: lab.tag, lab_net: LAB_NET, rawpoll_cmd: `${process.execPath} ${RAWPOLL}`,
      frame_size: SIZE, egress_rate: RATE_BPS, max_frames: MAX_FRAMES, result_file: resultFile,
    });
    const secs = (Date.now() - t0) / 1000;
    assert.equal(r.code, 0, r.out);
    const drops = tbfDrops() - drops0;
    const res = JSON.parse(readFileSync(resultFile, 'utf8')) as Result;
    const expBytes = BURST + LIMIT;
    const expFrames = expBytes / SIZE;
    console.log(`ansible incast: ${res.trials.length} trials in ${secs.toFixed(1)} s; largest loss-free burst ${res.largestLossFree?.frames} frames ` +
      `(span ${res.largestLossFree?.spanUs} µs, ${res.largestLossFree?.drainedFrames} forwarded meanwhile); implied buffer ` +
      `${res.bufferFrames} frames = ${res.bufferBytes} bytes, expected ${expFrames.toFixed(2)} frames = ${expBytes} bytes (tbf burst + limit); ` +
      `lost in all ${res.trials.reduce((a, t) => a + t.lost, 0)}, tbf dropped ${drops}; trials (frames/lost): ` +
      res.trials.map((t) => `${t.frames}/${t.void ? 'void' : t.lost}`).join(' '));
    assert.equal(res.senders, SENDERS);
    assert.equal(res.frameSize, SIZE);
    assert.ok(Math.abs(res.egressPps - RATE_BPS / (8 * SIZE)) < 1, `lab.ini's egress_overhead 0: ${res.egressPps} frames/s`);
    assert.deepEqual(res.notes, []);
    // A trial in which a sender missed the start instant (Ansible slower than start_lead on a loaded machine) or the
    // senders started too far apart is void and repeated; its frames still count toward tbf's drops below.
    const valid = res.trials.filter((t) => !t.void);
    for (const t of res.trials) if (t.void) console.log(`  void trial of ${t.frames} frames: ${t.void}`);
    assert.equal(valid[0].frames, MAX_FRAMES, 'the sweep starts at its ceiling');
    assert.ok(valid[0].lost > 0, 'a burst of 96 × 1000 bytes must overrun 48 000 bytes');
    assert.ok(res.largestLossFree && res.smallestLossy);
    assert.equal(res.smallestLossy.frames, res.largestLossFree.frames + 1, 'the search ends one frame apart');
    for (const t of valid) {
      assert.equal(t.sent, t.frames);
      assert.equal(t.duplicates, 0);
      // A sender whose whole share the port dropped is no flow to the sink: the loss is sent − received, not the sink's gaps.
      if (t.lost === 0) assert.equal(t.flows, SENDERS, `${t.frames} frames: one flow per sender`);
      else assert.ok(t.flows <= SENDERS);
    }
    assert.ok(res.bufferBytes !== null && Math.abs(res.bufferBytes - expBytes) <= 0.2 * expBytes, `${res.bufferBytes} bytes vs ${expBytes}`);
    assert.ok(res.bufferFrames !== null && Math.abs(res.bufferFrames - expFrames) <= 0.2 * expFrames, `${res.bufferFrames} frames vs ${expFrames}`);
    assert.equal(res.trials.reduce((a, t) => a + t.lost, 0), drops, 'the frames lost over the sweep are the frames tbf dropped');
    // The human line the play prints.
    assert.match(r.out, /implied buffer [\d.]+ frames, \d+ bytes/);
  });
