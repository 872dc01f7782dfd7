// An arriving address announced to its link's neighbours (native/src/neighbours.cc): a gratuitous
// ARP for IPv4, an unsolicited neighbour advertisement for IPv6, sent at once from this process.
import { loadAddon } from './native';

/**
 * Tells the neighbours on `device` (an Ethernet interface holding `address`) that `address` is
 * here now. Throws AddonUnavailable without the addon, an errno error when the interface is
 * unknown ('ENODEV'), no Ethernet ('EOPNOTSUPP'), without CAP_NET_RAW ('EPERM'), or the IPv6
 * address is not usable yet ('EADDRNOTAVAIL': still tentative).
 */
export function announceAddress(device: string, address: string): void {
  loadAddon().announceAddress(device, address);
}
