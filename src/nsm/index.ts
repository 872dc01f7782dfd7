// NSM, the status monitor ("statd"): wire codecs, durable per-address records, the monitor the
// lock manager calls, SM_NOTIFY in and out, the nfs-utils reader and the RPC program.
export * from './protocol';
export { NsmStore, parseHostRecord, parseStateNumber, recordKey, type NsmRecords, recordFileName, type HostRecord, type MonitorCallback, type SkippedFile, type LoadedAddress, type NsmStoreOptions } from './store';
export { readNfsUtilsStateDir, parseNfsUtilsLine, type NfsUtilsImport, type NfsUtilsLine, type NfsUtilsReadOptions } from './nfsutils';
export { Nsm, NODE_IDENTITY, type NsmOptions, type NsmSettings, type NotifyReport, type NotifyOptions, type ActivateReport } from './monitor';
export { nextUpState } from './monitor-list';
export { notifyMatches, type HostRebooted, type NotifyVerdict } from './reboots';
export type { NsmSender, NotifyRequest, NotifyTarget } from './sender';
export { RpcNsmSender, type RpcNsmSenderOptions } from './notifier';
export { announceCommand, interfaceOf, neighbourAnnouncer, type AddressInterface, type NeighbourAnnouncerOptions } from './announce';
export { createNsmProgram, defaultIsLocalCaller, type NsmProgramDeps } from './service';
