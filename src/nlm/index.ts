// NLM (program 100021, versions 1, 3 and 4): wire codecs, the service the daemon registers on the
// RPC server, its callbacks, and a client.
export * from './protocol';
export * from './codec';
export { createNlmService, defaultNlmServiceOptions } from './service';
export type { NlmService, NlmServiceDeps, NlmServiceOptions, NlmLockTable, ExportPolicy, NlmRebootNotice } from './service';
export { MonitoredHosts } from './hosts';
export type { HostMonitor, MonitoredHostsOptions } from './hosts';
export { callbackCredential } from './callbacks';
export type { NlmRpcCaller, CallbackTarget } from './callbacks';
export { NlmClient } from './client';
export type { NlmClientOptions, LockSpec, LockCallSpec, ShareSpec, NlmResult, NlmTestResult, NlmShareResult, GrantedCallback, GrantedReply, ResCallback } from './client';
