// ONC RPC (RFC 5531) and rpcbind (RFC 1833): the public surface of the rpc part.
export * from './types';
export * from './message';
export { RecordDecoder, RecordTooLargeError, encodeRecord, LAST_FRAGMENT, MAX_FRAGMENT } from './record';
export { DuplicateRequestCache, type DuplicateLookup } from './drc';
export { RpcDispatcher, type RpcDispatcherOptions, type RpcDispatchEvent, type CallMeta } from './dispatcher';
export { RpcServer, type RpcServerOptions, type RpcServerEvent } from './server';
export type { ArgsEncoder, ResultDecoder } from './calls';
export { RpcClient, callOnce, type RpcClientOptions, type CallOptions } from './client';
export { DatagramCaller, type DatagramCallOptions } from './datagram';
export { RpcClientPool, type RpcClientPoolOptions, type PooledCall } from './pool';
export { RpcError, RpcTimeoutError, RpcReplyError, RpcConnectionError } from './errors';
export * from './rpcbind';
