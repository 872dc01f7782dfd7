// NLM (program 100021, versions 1, 3 and 4): wire codecs, the service the daemon registers on the
// RPC server, its callbacks, and a client.
export * from './protocol';
export * from './codec';
export { createNlmService, type NlmService } from './service';
export { defaultNlmServiceOptions, type NlmServiceDeps, type NlmServiceOptions, type NlmLockTable, type ExportPolicy, type NlmRefusal, type NlmRefusalReason, type NlmRebootNotice } from './deps';
export { MonitoredHosts } from './hosts';
export type { HostMonitor, MonitoredHostsOptions } from './hosts';
export { callbackCredential } from './callbacks';
export type { NlmRpcCaller, CallbackTarget } from './callbacks';
export { NlmClient } from './client';
export type { NlmClientOptions, LockSpec, LockCallSpec, ShareSpec, NlmResult, NlmTestResult, NlmShareResult, GrantedCallback, GrantedReply, ResCallback } from './client';
