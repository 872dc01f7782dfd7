// The native addon's public surface: rtnetlink sockets, a small eBPF library over libbpf (open →
// configure → load → attach → read) with feature probes, lockdrop's probes, real files (handles,
// OFD locks, waits for outside holders, the fd limit), sd_notify and systemd's descriptor store, a unix socket's peer
// credentials (SO_PEERCRED) and gratuitous ARP / unsolicited NA. It hands out bytes: the rtnetlink
// and probe event codecs are src/watch's.
// Everything runs in the calling process's network namespace; nothing here calls setns.
export { AddonUnavailable, addonStatus, loadAddon, type FeatureAnswer } from './native';
export { openRtnetlink, rtnetlinkDump, type RtnetlinkOptions, type RtnetlinkSocket } from './rtnetlink';
export { BpfObject, BpfUnsupported, bpfRunTimeStats, mountTracefs, probeFeatures, u32, type FeatureName, type Features, type ProgramInfo, type ProgramStatus } from './bpf';
export { currentNetns, openLockdropProbes, probeObjectPath, type LockdropProbes, type LockdropProbesOptions } from './probes';
export {
  awaitCloses, checkHandle, closeFd, handleOwner, closesPending, errnoName, fileType, filesystemId, lockRefusal, nameToHandle, nofileLimit, ofdCancelAll, ofdCancelWait, ofdGetLock, ofdSetLock, ofdWait,
  openByHandle, openLock, openPath, openRegular, raiseNofileLimit, releaseFds, setWaitPoolSize, waitPoolStats, LOCK_READ, LOCK_REFUSED, LOCK_UNLOCK, LOCK_WRITE,
  type FileHandle, type FileOwner, type FileType, type FilesystemId, type HoldType, type LockType, type NofileLimit, type OfdHolder, type OpenMode, type Position,
} from './files';
export { sdNotify } from './notify';
export { bindNotifySocket, memfdCreate, receiveNotify, sdNotifyWithFds, setCloexec, type Notification } from './fdstore';
export { peerCredentials, type PeerCredentials } from './peercred';
export { announceAddress } from './neighbours';
