#!/usr/bin/env python3
"""pktgen-format datagrams through the kernel's own UDP socket, IPv4 or IPv6 (standard library only, no rawpoll code):

  pktgen6.py '{"dst": "2001:db8::2", "port": 9, "count": 500, "skip": [7, 8], "sport": 40006, "pps": 2000,
               "big": [20], "dstopts": true}'

Each datagram carries the 16-byte pktgen header (PROTOCOLS.md §5): magic 0xbe9be955, seq 1..count, tv_sec, tv_usec,
then 2 bytes of padding; the seqs in "skip" are never sent (the loss the sink must count). The family follows the
address. "big" seqs carry 3000 bytes instead (over a 1500-byte MTU the kernel sends them as fragments: 3 for IPv6);
"dstopts" puts an 8-byte Destination Options header (one PadN option) in front of UDP (IPV6_DSTOPTS, RFC 3542).
"raw": {"iface": IF, "srcMac": .., "dstMac": .., "src": IPV6, "vlan": 100} builds the frames here instead and sends
them on an AF_PACKET socket: Ethernet, an 802.1Q tag, IPv6, UDP (checksum over the RFC 8200 §8.1 pseudo-header) —
for a kernel without 802.1Q devices (no 8021q module), as flood.py crafts its frames.
Paced in bursts of 16 so a veth under load keeps them. Prints {"sent": N} at the end.
"""
import json
import socket
import struct
import sys
import time



def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff


def tagged_frame(raw: dict, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    src6 = socket.inet_pton(socket.AF_INET6, raw['src'])
    dst6 = socket.inet_pton(socket.AF_INET6, dst)
    ulen = 8 + len(payload)
    pseudo = src6 + dst6 + struct.pack('!IxxxB', ulen, 17)
    c = csum(pseudo + struct.pack('!HHHH', sport, dport, ulen, 0) + payload) or 0xffff
    udp = struct.pack('!HHHH', sport, dport, ulen, c) + payload
    ip6 = struct.pack('!IHBB', 6 << 28, ulen, 17, 64) + src6 + dst6
    mac = lambda m: bytes.fromhex(m.replace(':', ''))
    return mac(raw['dstMac']) + mac(raw['srcMac']) + struct.pack('!HHH', 0x8100, raw['vlan'], 0x86dd) + ip6 + udp


a = json.loads(sys.argv[1])
raw = a.get('raw')
fam = socket.AF_INET6 if ':' in a['dst'] else socket.AF_INET
if raw:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((raw['iface'], 0))
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', a.get('sport', 0)))
skip = set(a.get('skip', []))
big = set(a.get('big', []))
if a.get('dstopts'):
    # next header and length 0 (the kernel fills the former), then PadN with 4 bytes of zeros: 8 bytes.
    s.setsockopt(socket.IPPROTO_IPV6, getattr(socket, 'IPV6_DSTOPTS', 59), bytes([0, 0, 1, 4, 0, 0, 0, 0]))
pps = a.get('pps', 2000)
sent = 0
t0 = time.monotonic()
for seq in range(1, a['count'] + 1):
    if seq in skip:
        continue
    now = time.time()
    pay = struct.pack('!IIII', 0xbe9be955, seq, int(now), int(now * 1e6) % 1000000) + bytes(2984 if seq in big else 2)
    if raw:
        s.send(tagged_frame(raw, a['dst'], a['sport'], a['port'], pay))
    else:
        s.sendto(pay, (a['dst'], a['port']))
    sent += 1
    if sent % 16 == 0:
        ahead = t0 + sent / pps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(json.dumps({'sent': sent}))
