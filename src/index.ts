// rawpoll as a library: `import { UdpSender } from 'rawpoll'`. The CLI (src/cli) is a thin layer over these.
export { UsageError, RuntimeError } from './errors.js';
export * from './wire/mac.js';
export * from './wire/addr.js';
export * from './wire/checksum.js';
export * from './wire/error.js';
export * from './wire/ethernet.js';
export * from './wire/vlan.js';
export * from './wire/arp.js';
// wire/addr's parseIpv4 reads an address; the header's is parseIpv4Header here.
export {
  parseIpv4 as parseIpv4Header, emitIpv4, ipv4ChecksumOk, ipv4Check, ipv4HeaderLen, Ipv4View, Ipv4Repr,
  IPV4_FIELD, IPV4_OFF, IPV4_HEADER_LEN, IPPROTO_UDP, IPV4_DF, IPV4_MF, IPV4_FRAGMENT_BITS,
} from './wire/ipv4.js';
export * from './wire/udp.js';
export * from './wire/ipv6.js';
export * from './wire/icmpv6.js';
export * from './wire/udpframe.js';
export * from './wire/pcapfile.js';
export * from './link/iface.js';
export * from './link/link.js';
export * from './link/pcap.js';
export * from './link/pcapwriter.js';
export * from './resolve/arp.js';
export * from './resolve/ndp.js';
export * from './resolve/nexthop.js';
export * from './tx/sender.js';
export * from './proto/pktgen.js';
export * from './proto/netconsole.js';
export * from './proto/netoops.js';
export * from './proto/netdump.js';
export * from './proto/kmsg.js';
export * from './rx/sink.js';
export * from './rx/nclog.js';
export * from './rx/syslog.js';
export * from './rx/oopscollect.js';
export * from './rx/collect.js';
export * from './rx/netdumpd.js';
export * from './rx/metrics.js';
export * from './rx/hook.js';
export * from './tx/netdump.js';
export * from './tx/blast.js';
export * from './tx/oops.js';
export * from './tx/netconsole.js';
export * from './tx/plan.js';
export * from './rx/batch.js';
export * from './rx/engine.js';
export { initHistograms, encodeHistogram, decodeHistogram, Samples, SIGNIFICANT_DIGITS } from './rx/histogram.js';
export { TrialServer, SERVE_DEFAULTS, CONTROL_VERSION, type ServeLimits, type TrialServerOptions, type ServeEvent, type TrialStatus, type ServeTotals } from './rx/serve.js';
export { ControlClient, ControlError, type ControlClientOptions, type ServerHello, type TrialResult } from './exp/control.js';
export * from './exp/results.js';
export {
  runRfc2544, searchThroughput, searchFrameLoss, measureLatency, searchBurst, bufferTimeUs, lineMbps, RFC2544_SIZES,
  SinkOverrunError, type Rfc2544Params, type RunTrial,
} from './exp/rfc2544.js';
export { renderSvg, renderHtml, writeReport } from './exp/report.js';
