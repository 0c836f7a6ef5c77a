// Our own typings for the `cap` libpcap binding (it ships none). Only what rawpoll uses.
declare module 'cap' {
  import { EventEmitter } from 'node:events';
  export interface CapAddress { addr: string; netmask?: string; broadaddr?: string; dstaddr?: string }
  export interface CapDevice { name: string; description?: string; addresses: CapAddress[]; flags?: string }
  export class Cap extends EventEmitter {
    constructor();
    /** pcap_create + promisc + pcap_activate + nonblock + BPF filter. `buffer` receives every captured frame: keep it alive. */
    open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
    /** pcap_sendpacket; throws Error(pcap_geterr) on failure. */
    send(buffer: Buffer, length?: number): void;
    close(): boolean;
    setMinBytes?(n: number): void;
    on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): this;
    static findDevice(ip?: string): string | undefined;
    static deviceList(): CapDevice[];
  }
  const _default: { Cap: typeof Cap; decoders: unknown };
  export default _default;
}
