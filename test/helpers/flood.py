#!/usr/bin/env python3
"""Hostile traffic for the receiver fuzz tests: crafted and random UDP datagrams, sources spoofed across a prefix.

Written apart from rawpoll (standard library only: an AF_PACKET socket and struct), so the attacker shares no code
with what it attacks. Runs inside a test namespace, on a veth the test made; never anywhere else.

  flood.py '{"iface": "...", "srcMac": "..", "dstMac": "..", "dst": "10.1.2.2", "port": 2004,
             "kind": "oops-fake", "count": 30000, "spoof": "172.20.0.0/17", "pps": 30000, "seed": 1}'

spoof: source addresses drawn from this prefix (random source ports 1024-65535); "src": "IP:PORT" instead sends from
one fixed source. pps: frames per second (sent in bursts of 64 every 64/pps s); 0 = as fast as it goes.
Prints one JSON line: {"sent": N, "seconds": S}.

Kinds (the datagram classes of issue 9, PROTOCOLS.md for the layouts):
  random       random bytes, 0-1400 long
  oops-fake    netoops v3, a fresh (boot_id, dump_id) per datagram, packet_count 4096, packet_no 0, zero data:
               the issue's header 03000100d8000000d8000100 00100000 00000000 000000f0 362e31 with the ids varied
  oops-trunc   a valid netoops header cut short at a random length
  ncfrag       6,777,1,-,ncfrag=<2i>/262144;z for i = 0..count-1 (one record, tiny pieces: the quadratic case)
  nc-ext       extended netconsole records with random seqs (seq-gap/late events per spoofed source)
  herald       netdump HERALD (type 1) naming directory p<i>, to the herald port
  vmcore       netdump VMCORE (type 3) at offsets 2^63, 2^44, 2^52, 2^64-1, random ports 32768-60999 and the given one
  pktgen       the pktgen test header (magic be9be955, seq, tv) with random seqs, 0xffffffff included
  bad-ip       pktgen datagrams in frames that break IPv4/UDP: IHL < 5, IP length past the frame, UDP length past
               the IP length
"""
import json
import os
import random
import socket
import struct
import sys
import time


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ip4(s: str) -> int:
    return struct.unpack('!I', socket.inet_aton(s))[0]


def payload(kind: str, i: int, rnd: random.Random) -> bytes:
    if kind == 'random':
        return rnd.randbytes(rnd.randrange(0, 1401))
    if kind in ('oops-fake', 'oops-trunc'):
        boot_id = 0xf0000000 | (i >> 16)
        h = struct.pack('<HHHHHHII I', 3, i & 0xffff, 216, 0, 216, 1, 4096, 0, boot_id)
        h += b'6.1'.ljust(64, b'\0') + bytes(128)      # kernel_version, user_blob
        d = h + bytes(1024)                              # data at 216: 1240 bytes
        return d if kind == 'oops-fake' else d[:rnd.randrange(0, 216)]
    if kind == 'ncfrag':
        return b'6,777,1,-,ncfrag=%d/262144;z' % (2 * i)
    if kind == 'nc-ext':
        return b'6,%d,%d,-;flood %d\n' % (rnd.getrandbits(32), i, i)
    if kind == 'herald':
        p = b'p%d\0' % i
        return struct.pack('!IIQII', 1, 1, 0, len(p), 0) + p
    if kind == 'vmcore':
        off = (2 ** 63, 2 ** 44, 2 ** 52, 2 ** 64 - 1)[i % 4]
        data = b'Z' * 1024
        return struct.pack('!IIQII', 3, i, off, len(data), 0) + data
    if kind in ('pktgen', 'bad-ip'):
        seq = 0xffffffff if i % 97 == 0 else rnd.getrandbits(32)
        t = time.time()
        return struct.pack('!IIII', 0xbe9be955, seq, int(t), int((t % 1) * 1e6)) + bytes(14)
    raise SystemExit(f'flood.py: unknown kind {kind!r}')


def frame(a: dict, src: int, sport: int, dport: int, data: bytes, i: int, rnd: random.Random) -> bytes:
    udp_len = 8 + len(data)
    ihl, ip_len = 5, 20 + udp_len
    if a['kind'] == 'bad-ip':
        bad = i % 3
        if bad == 0:
            ihl = rnd.randrange(0, 5)           # IHL < 5
        elif bad == 1:
            ip_len += rnd.randrange(1, 1000)    # IP total length past the frame
        else:
            udp_len += rnd.randrange(1, 1000)   # UDP length past the IP length
    iph = struct.pack('!BBHHHBBHII', 0x40 | ihl, 0, ip_len & 0xffff, i & 0xffff, 0, 64, 17, 0, src, a['_dst'])
    iph = iph[:10] + struct.pack('!H', csum(iph)) + iph[12:]
    udph = struct.pack('!HHHH', sport, dport, udp_len & 0xffff, 0)   # UDP checksum 0: none (IPv4)
    return a['_eth'] + iph + udph + data


def main() -> None:
    a = json.loads(sys.argv[1])
    rnd = random.Random(a.get('seed', 1))
    a['_dst'] = ip4(a['dst'])
    a['_eth'] = bytes.fromhex(a['dstMac'].replace(':', '')) + bytes.fromhex(a['srcMac'].replace(':', '')) + b'\x08\x00'
    if 'spoof' in a:
        net, bits = a['spoof'].split('/')
        base, span = ip4(net), 1 << (32 - int(bits))
        fixed = None
    else:
        host, port = a['src'].rsplit(':', 1)
        fixed = (ip4(host), int(port))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a['iface'], 0))
    count, pps, kind = int(a['count']), float(a.get('pps', 0)), a['kind']
    t0 = time.monotonic()
    sent = 0
    for i in range(count):
        if fixed:
            src, sport = fixed
        else:
            src, sport = base + rnd.randrange(1, span - 1), rnd.randrange(1024, 65536)
        dport = a['port']
        if kind == 'vmcore' and i % 2:
            dport = rnd.randrange(32768, 61000)
        f = frame(a, src, sport, dport, payload(kind, i, rnd), i, rnd)
        while True:
            try:
                s.send(f)
                break
            except OSError as e:   # ENOBUFS: the veth queue is full; wait for it rather than lose the count
                if e.errno != 105:
                    raise
                time.sleep(0.0005)
        sent += 1
        if pps > 0 and sent % 64 == 0:
            ahead = t0 + sent / pps - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(json.dumps({'sent': sent, 'seconds': round(time.monotonic() - t0, 3)}), flush=True)


if __name__ == '__main__':
    main()
