// The bottom floor: what every part needs of network addresses and retries. Imports nothing of lockdrop.
export {
  AddressParseError, cidrContains, familyOf, formatAddress, isAddress, isLinkLocal, isLoopback, isNetwork, networkSet, normaliseAddress, parseAddress, parseCidr,
  type AddressFamily, type Cidr,
} from './address';
export { Backoff, type BackoffOptions } from './backoff';
