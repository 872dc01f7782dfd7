// Failover: address events in, drops / grace / listeners / SM_NOTIFY out.
export { decide } from './decide';
export type { FailoverPlan, FailoverStep } from './decide';
export { FailoverController } from './controller';
export type { FailoverJournal, FailoverLocks, FailoverMonitors, FailoverOptions, FailoverReport, Listeners, NotifyOutcome } from './controller';
export { plural } from './words';
