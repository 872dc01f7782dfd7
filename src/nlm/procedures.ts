// The NLM procedure table: each procedure number of each version, its codec and its handler
// (handlers.ts), in one place. A *_MSG has the arguments of its synchronous twin, an empty RPC
// reply, and its answer sent as the *_RES call; an arriving *_RES gets an empty reply.
import { DROP_REPLY, type CallContext, type Procedure, type ProgramVersion } from '../rpc/types';
import type { XdrReader, XdrWriter } from '../xdr';
import * as C from './codec';
import { then, type Answer, type NlmHandlers } from './handlers';
import { NLM_PROG, NlmProc, type NlmVersion } from './protocol';

type Decode<A> = (r: XdrReader, vers: number) => A;
type Encode<R> = (w: XdrWriter, vers: number, r: R) => void;
type Handle<A, R> = (h: NlmHandlers, a: A, ctx: CallContext) => Answer<R>;

/** How one procedure is served. `auth`: needs AUTH_SYS (when the service requires it). */
type Spec =
  | { kind: 'call'; decode: Decode<any>; encode: Encode<any>; handle: Handle<any, any>; auth: boolean; idempotent?: boolean }
  | { kind: 'message'; res: number; decode: Decode<any>; encode: Encode<any>; handle: Handle<any, any>; auth: boolean }
  | { kind: 'res'; decode: Decode<any>; handle: Handle<any, void> };

const voidArgs: Decode<void> = () => undefined;
const voidResult: Encode<void> = () => {};
const encRes: Encode<C.NlmRes> = (w, _v, r) => C.encodeRes(w, r);
const encShareRes: Encode<C.NlmShareRes> = (w, _v, r) => C.encodeShareRes(w, r);
const ignored: Handle<unknown, void> = () => undefined;

const test: Handle<C.NlmTestArgs, C.NlmTestRes> = (h, a, ctx) => h.test(a, ctx);
const cancel: Handle<C.NlmCancelArgs, C.NlmRes> = (h, a, ctx) => h.cancel(a, ctx);
const unlock: Handle<C.NlmUnlockArgs, C.NlmRes> = (h, a, ctx) => h.unlock(a, ctx);
const granted: Handle<C.NlmTestArgs, C.NlmRes> = (h, a, ctx) => h.granted(a, ctx);

export const NLM_PROCEDURES: ReadonlyMap<number, Spec> = new Map<number, Spec>([
  [NlmProc.NULL, { kind: 'call', decode: voidArgs, encode: voidResult, handle: () => undefined, auth: false, idempotent: true }],
  [NlmProc.TEST, { kind: 'call', decode: C.decodeTestArgs, encode: C.encodeTestRes, handle: test, auth: false, idempotent: true }],
  [NlmProc.LOCK, { kind: 'call', decode: C.decodeLockArgs, encode: encRes, handle: (h, a, ctx) => h.lock(a, ctx), auth: true }],
  [NlmProc.CANCEL, { kind: 'call', decode: C.decodeCancelArgs, encode: encRes, handle: cancel, auth: true }],
  [NlmProc.UNLOCK, { kind: 'call', decode: C.decodeUnlockArgs, encode: encRes, handle: unlock, auth: true }],
  [NlmProc.GRANTED, { kind: 'call', decode: C.decodeTestArgs, encode: encRes, handle: granted, auth: false }],
  [NlmProc.TEST_MSG, { kind: 'message', res: NlmProc.TEST_RES, decode: C.decodeTestArgs, encode: C.encodeTestRes, handle: test, auth: false }],
  [NlmProc.LOCK_MSG, { kind: 'message', res: NlmProc.LOCK_RES, decode: C.decodeLockArgs, encode: encRes, handle: (h, a, ctx) => h.lockMsg(a, ctx), auth: true }],
  [NlmProc.CANCEL_MSG, { kind: 'message', res: NlmProc.CANCEL_RES, decode: C.decodeCancelArgs, encode: encRes, handle: cancel, auth: true }],
  [NlmProc.UNLOCK_MSG, { kind: 'message', res: NlmProc.UNLOCK_RES, decode: C.decodeUnlockArgs, encode: encRes, handle: unlock, auth: true }],
  [NlmProc.GRANTED_MSG, { kind: 'message', res: NlmProc.GRANTED_RES, decode: C.decodeTestArgs, encode: encRes, handle: granted, auth: false }],
  [NlmProc.TEST_RES, { kind: 'res', decode: C.decodeTestRes, handle: ignored }],
  [NlmProc.LOCK_RES, { kind: 'res', decode: C.decodeRes, handle: ignored }],
  [NlmProc.CANCEL_RES, { kind: 'res', decode: C.decodeRes, handle: ignored }],
  [NlmProc.UNLOCK_RES, { kind: 'res', decode: C.decodeRes, handle: ignored }],
  [NlmProc.GRANTED_RES, { kind: 'res', decode: C.decodeRes, handle: (h, a: C.NlmRes, ctx) => h.grantedRes(a, ctx) }],
  [NlmProc.SM_NOTIFY, { kind: 'call', decode: (r) => C.decodeReboot(r), encode: voidResult, handle: (h, a: C.NlmReboot, ctx) => h.smNotify(a, ctx), auth: false }],
  [NlmProc.SHARE, { kind: 'call', decode: (r) => C.decodeShareArgs(r), encode: encShareRes, handle: (h, a: C.NlmShareArgs, ctx) => h.share(a, ctx), auth: true }],
  [NlmProc.UNSHARE, { kind: 'call', decode: (r) => C.decodeShareArgs(r), encode: encShareRes, handle: (h, a: C.NlmShareArgs, ctx) => h.unshare(a, ctx), auth: true }],
  [NlmProc.NM_LOCK, { kind: 'call', decode: C.decodeLockArgs, encode: encRes, handle: (h, a: C.NlmLockArgs, ctx) => h.nmLock(a, ctx), auth: true }],
  [NlmProc.FREE_ALL, { kind: 'call', decode: (r) => C.decodeNotify(r), encode: voidResult, handle: (h, a: C.NlmNotify, ctx) => h.freeAll(a, ctx), auth: true }],
]);

const NAMES = new Map<number, string>(Object.entries(NlmProc).map(([name, n]) => [n, name]));

function procedure(h: NlmHandlers, proc: number, spec: Spec, vers: number): Procedure<any, any> {
  const name = NAMES.get(proc)!;
  const decodeArgs = (r: XdrReader): unknown => spec.decode(r, vers);
  switch (spec.kind) {
    case 'call':
      return {
        name, decodeArgs, idempotent: spec.idempotent ?? false,
        encodeResult: (w, r) => spec.encode(w, vers, r),
        handle: (a, ctx) => {
          if (spec.auth) h.requireAuth(ctx);
          return spec.handle(h, a, ctx);
        },
      };
    case 'message':
      return {
        name, decodeArgs, encodeResult: voidResult,
        handle: (a, ctx) => {
          if (spec.auth) h.requireAuth(ctx);
          // A dropped LOCK_MSG sends no *_RES either (Linux's nlmsvc_callback): the client asks again.
          return then(spec.handle(h, a, ctx), (result) => (result === DROP_REPLY ? DROP_REPLY : h.sendRes(ctx, spec.res, (w) => spec.encode(w, vers, result))));
        },
      };
    case 'res':
      return { name, decodeArgs, encodeResult: voidResult, handle: (a, ctx) => spec.handle(h, a, ctx) };
  }
}

/** The NLM program versions to register: version 1 has no SHARE, UNSHARE, NM_LOCK or FREE_ALL. */
export function nlmPrograms(h: NlmHandlers, versions: readonly NlmVersion[]): ProgramVersion[] {
  return versions.map((vers) => ({
    prog: NLM_PROG,
    vers,
    procedures: new Map([...NLM_PROCEDURES].filter(([p]) => vers !== 1 || p <= NlmProc.SM_NOTIFY).map(([p, spec]) => [p, procedure(h, p, spec, vers)])),
  }));
}
