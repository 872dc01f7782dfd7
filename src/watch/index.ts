// The watch part: the codecs (rtnetlink, pcap, probe events), address sources, the pipeline to
// AddressEvents, trace record and replay. It is given its kernel ends (rtnetlink socket, probes).
export * from './types';
export * as netlink from './codec/netlink';
export { NetlinkDecodeError, decodeDatagram, type RtnetlinkMessage } from './codec/netlink';
export { PcapDecodeError, decodePcap, encodePcapHeader, encodePcapRecord, LINKTYPE_NETLINK, type TraceRecord } from './codec/pcap';
export { EVENT_LAYOUT, EVENT_SIZE, EVENT_VERSION, ProbeEventError, decodeEvent, type ProbeEvent, type ProbeEventKind } from './codec/probe-event';
export { TraceWriter, readTrace } from './trace';
export { AddressStateMachine, type MachineDecision, type MachineInput, type MachineOptions } from './machine';
export {
  addressEvents, addressTransitions, floatingFilter, onlyFloating, watchAddresses, type PipelineClock, type WatchConfig, type WatchConfigInput,
} from './pipeline';
export { IntentTracker, bpfSource } from './sources/bpf';
export { NetlinkDumpError, netlinkSource, type NetlinkSourceOptions } from './sources/netlink';
export { pollSource, readLocalAddresses, type PollSourceOptions, type SnapshotAddress } from './sources/poll';
export { replaySource, type ReplayOptions } from './sources/replay';
export { recordTrace, type TraceRecorder } from './record';
