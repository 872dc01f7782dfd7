// The native addon's public surface: rtnetlink sockets, a small eBPF library over libbpf (open →
// configure → load → attach → read) with feature probes, and lockdrop's probe event layout.
// Everything runs in the calling process's network namespace; nothing here calls setns.
export { AddonUnavailable, addonStatus, loadAddon, type FeatureAnswer } from './native';
export { openRtnetlink, rtnetlinkDump, rtnetlinkGroups, DEFAULT_RCVBUF, type RtnetlinkOptions, type RtnetlinkOverflow, type RtnetlinkSocket } from './rtnetlink';
