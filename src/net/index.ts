// The bottom floor: what every part needs of network addresses. Imports nothing of lockdrop.
export {
  AddressParseError, cidrContains, familyOf, formatAddress, isAddress, isLinkLocal, isLoopback, isNetwork, networkSet, normaliseAddress, parseAddress, parseCidr,
  type AddressFamily, type Cidr,
} from './address';
