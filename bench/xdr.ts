// XDR decode+encode of an NLM4 LOCK call (RFC 1813 appendix II), built by hand with XdrWriter:
// the RPC header with an AUTH_SYS credential, then nlm4_lockargs.
// Run: npx tsx bench/xdr.ts [seconds]
import { XdrReader, XdrWriter } from '../src/xdr';
import { AUTH_SYS, credentialToOpaqueAuth, decodeCall, NULL_AUTH, parseCredential, writeCallHeader } from '../src/rpc';

interface Nlm4LockArgs {
  cookie: Buffer;
  block: boolean;
  exclusive: boolean;
  callerName: string;
  fh: Buffer;
  oh: Buffer;
  svid: number;
  offset: bigint;
  len: bigint;
  reclaim: boolean;
  state: number;
}

const cred = credentialToOpaqueAuth({ flavor: AUTH_SYS, stamp: 0x5f3a, machineName: 'client-17.example.com', uid: 0, gid: 0, gids: [0, 1, 2, 3, 4, 6, 10] });

function encode(xid: number, a: Nlm4LockArgs): Buffer {
  const w = new XdrWriter(256);
  writeCallHeader(w, { xid, prog: 100021, vers: 4, proc: 2, cred, verf: NULL_AUTH });
  w.opaque(a.cookie, 1024).bool(a.block).bool(a.exclusive);
  w.string(a.callerName, 1024).opaque(a.fh, 1024).opaque(a.oh, 1024).int(a.svid).uhyper(a.offset).uhyper(a.len);
  w.bool(a.reclaim).int(a.state);
  return w.toBuffer();
}

function decode(buf: Buffer): Nlm4LockArgs {
  const call = decodeCall(buf);
  parseCredential(call.cred);
  const r = new XdrReader(buf, call.argsOffset);
  const a: Nlm4LockArgs = {
    cookie: r.opaque(1024), block: r.bool(), exclusive: r.bool(),
    callerName: r.string(1024), fh: r.opaque(1024), oh: r.opaque(1024), svid: r.int(), offset: r.uhyper(), len: r.uhyper(),
    reclaim: r.bool(), state: r.int(),
  };
  r.done();
  return a;
}

const args: Nlm4LockArgs = {
  cookie: Buffer.from('0123456789abcdef', 'hex'), block: true, exclusive: true, callerName: 'client-17.example.com',
  fh: Buffer.alloc(32, 0xab), oh: Buffer.from('4242@client-17.example.com'), svid: 4242, offset: 0n, len: 0n, reclaim: false, state: 3,
};

const seconds = Number(process.argv[2] ?? 3);
let msg = encode(1, args);
console.log(`NLM4 LOCK call: ${msg.length} bytes`);
for (let i = 0; i < 20_000; i++) msg = encode(i, decode(msg)); // warm up
let n = 0;
const start = process.hrtime.bigint();
const until = start + BigInt(seconds * 1e9);
while (process.hrtime.bigint() < until) {
  for (let i = 0; i < 1000; i++) msg = encode(n++, decode(msg));
}
const secs = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`xdr decode+encode NLM4 LOCK: ${Math.round(n / secs).toLocaleString('en')} calls/s (${n} in ${secs.toFixed(2)} s)`);
