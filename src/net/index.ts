// The bottom floor: what every part needs of network addresses and retries, and the rtnetlink
// socket's loss notice (the addon's socket and the watch part both name it). Imports nothing of lockdrop.
export {
  AddressParseError, cidrContains, familyOf, formatAddress, isAddress, isLinkLocal, isLoopback, isNetwork, networkSet, normaliseAddress, parseAddress, parseCidr,
  type AddressFamily, type Cidr,
} from './address';
export { Backoff, type BackoffOptions } from './backoff';
export type { RtnetlinkOverflow } from './rtnetlink';
