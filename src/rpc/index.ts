// ONC RPC (RFC 5531) and rpcbind (RFC 1833): the public surface of the rpc part.
export * from './types';
export * from './message';
export { RecordDecoder, RecordTooLargeError, encodeRecord, LAST_FRAGMENT, MAX_FRAGMENT } from './record';
export { DuplicateRequestCache, type DuplicateLookup } from './drc';
export { RpcServer, type RpcServerOptions, type RpcServerEvent, type CallMeta } from './server';
export { RpcClient, callOnce, type RpcClientOptions, type CallOptions, type ArgsEncoder, type ResultDecoder } from './client';
export { RpcError, RpcTimeoutError, RpcReplyError, RpcConnectionError } from './errors';
export * from './rpcbind';
