import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressError } from '../../src/wire/addr.js';
import { formatEndpoint, formatIpAddress, parseEndpointAny, parseIpAddress, parseSourceAny, sameSubnetAny } from '../../src/wire/endpoint.js';

const hex = (e: { family: number; ip6?: Buffer }) => (e.family === 6 ? e.ip6!.toString('hex') : '');

function bad(f: () => unknown, msg: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof AddressError && msg.test((e as Error).message), msg.source);
}

test('parseEndpointAny: IPv4 as before, IPv6 in brackets with a port, bare without one', () => {
  assert.deepEqual(parseEndpointAny('10.0.0.2:9000', '--to'), { family: 4, ip: 0x0a000002, port: 9000 });
  const v6 = parseEndpointAny('[fd00::2]:9000', '--to');
  assert.equal(v6.family, 6);
  assert.equal(hex(v6), 'fd000000000000000000000000000002');
  assert.equal(v6.port, 9000);
  const bare = parseEndpointAny('fd00::2:9000', '--to', 6666); // an address, not address:port
  assert.equal(hex(bare), 'fd000000000000000000000000029000');
  assert.equal(bare.port, 6666);
  assert.equal(parseEndpointAny('[fd00::2]', '--to', 6666).port, 6666);
  assert.equal(parseEndpointAny('10.0.0.2', '--to', 6666).port, 6666);
  const ll = parseEndpointAny('[fe80::1%veth0]:514', '--to');
  assert.deepEqual([ll.family, ll.family === 6 && ll.zone, ll.port], [6, 'veth0', 514]);
});

test('parseEndpointAny: errors name the value and the forms that are valid', () => {
  bad(() => parseEndpointAny('fd00::2', '--to'), /^bad --to 'fd00::2': an IPv6 address with a port is written in brackets, e\.g\. \[fd00::2\]:9000$/);
  bad(() => parseEndpointAny('[fd00::2:9000', '--to'), /'\[' without '\]'/);
  bad(() => parseEndpointAny('[fd00::2]9000', '--to'), /expected ':PORT' after '\]'/);
  bad(() => parseEndpointAny('[10.0.0.2]:9', '--to'), /brackets are for IPv6 addresses/);
  bad(() => parseEndpointAny('[fd00::2]:70000', '--to'), /bad --to port '70000': expected a UDP port number 0-65535/);
  bad(() => parseEndpointAny('[fd00::zz]:9', '--to'), /bad --to 'fd00::zz': expected an IPv6 address/);
  bad(() => parseEndpointAny('host:9', '--to'), /bad --to 'host': expected an IPv4 address like 10\.0\.0\.2 or an IPv6 address/);
  bad(() => parseEndpointAny('[fd00::1%eth0]:9', '--to'), /a zone \(%eth0\) belongs to a link-local address/);
});

test('parseSourceAny: prefixes per family, ports in brackets for IPv6', () => {
  assert.deepEqual(parseSourceAny('10.0.0.7/24:5000', '--from'), { family: 4, ip: 0x0a000007, port: 5000, prefix: 24 });
  const a = parseSourceAny('fd00::7/64', '--from');
  assert.deepEqual([a.family, hex(a), a.prefix, a.port], [6, 'fd000000000000000000000000000007', 64, undefined]);
  const b = parseSourceAny('[fd00::7/64]:5000', '--from');
  assert.deepEqual([b.prefix, b.port], [64, 5000]);
  const c = parseSourceAny('[fd00::7]:5000', '--from');
  assert.deepEqual([c.prefix, c.port], [undefined, 5000]);
  bad(() => parseSourceAny('fd00::7/129', '--from'), /^bad --from prefix '\/129': expected 0-128 for an IPv6 address$/);
  bad(() => parseSourceAny('10.0.0.7/33', '--from'), /^bad --from prefix '\/33': expected 0-32 for an IPv4 address$/);
});

test('formatting: RFC 5952 text, brackets with a port; subnets per family', () => {
  assert.equal(formatEndpoint(parseEndpointAny('[FD00:0:0:0:0:0:0:2]:9', '--to')), '[fd00::2]:9');
  assert.equal(formatEndpoint(parseEndpointAny('10.0.0.2:9', '--to')), '10.0.0.2:9');
  assert.equal(formatIpAddress(parseIpAddress('fe80::1%veth0', 'x')), 'fe80::1%veth0');
  const x = parseIpAddress('fd00:1::5', 'x');
  assert.equal(sameSubnetAny(x, parseIpAddress('fd00:1::ffff', 'x'), 64), true);
  assert.equal(sameSubnetAny(x, parseIpAddress('fd00:2::5', 'x'), 64), false);
  assert.equal(sameSubnetAny(x, parseIpAddress('fd00:1::5', 'x'), 128), true);
  assert.equal(sameSubnetAny(parseIpAddress('10.0.0.1', 'x'), parseIpAddress('10.0.0.200', 'x'), 24), true);
  assert.equal(sameSubnetAny(parseIpAddress('10.0.0.1', 'x'), parseIpAddress('10.0.1.1', 'x'), 23), true);
  assert.equal(sameSubnetAny(parseIpAddress('10.0.0.1', 'x'), parseIpAddress('10.0.2.1', 'x'), 23), false);
  assert.equal(sameSubnetAny(parseIpAddress('10.0.0.1', 'x'), x, 0), false, 'never across families');
});
