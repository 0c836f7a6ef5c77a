import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RuntimeError, UsageError } from '../../src/errors.js';

test('addon loader: a clear RuntimeError naming the build command when the addon is missing, for both engines', async () => {
  process.env.RAWPOLL_NATIVE = '/nonexistent/rawpoll_native.node';
  const m = await import('../../src/link/native.js');
  const { PcapLink } = await import('../../src/link/pcap.js');
  assert.equal(m.nativeAvailable(), false);
  assert.throws(() => m.loadNative(), (e: unknown) => e instanceof RuntimeError && /npm run build/.test(e.message) && /--engine pcap/.test(e.message));
  assert.throws(() => m.NativeLink.open('lo'), RuntimeError);
  assert.throws(() => PcapLink.open('lo'), (e: unknown) => e instanceof RuntimeError && /npm run build/.test(e.message) && /libpcap-dev/.test(e.message));
  delete process.env.RAWPOLL_NATIVE;
});

test('parseEngine: pcap | native, anything else is a usage error naming both', async () => {
  const { parseEngine } = await import('../../src/link/native.js');
  assert.equal(parseEngine('pcap'), 'pcap');
  assert.equal(parseEngine('native'), 'native');
  assert.throws(() => parseEngine('dpdk'), (e: unknown) => e instanceof UsageError && /bad --engine 'dpdk'.*pcap.*native/.test(e.message));
});
