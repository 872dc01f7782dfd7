// Shared pieces for the rpc tests: a tiny test program and raw sockets for hand-made input.
import dgram from 'node:dgram';
import net from 'node:net';
import type { XdrReader, XdrWriter } from '../../src/xdr';
import { encodeCall, NULL_AUTH, type CallContext, type ProgramVersion, type Procedure } from '../../src/rpc';

export const TEST_PROG = 0x20000099;

/** NULL, ECHO (string in, string out), WHERE (returns the call context), CRASH, COUNT (non-idempotent counter). */
export function testProgram(vers = 1, extra: [number, Procedure<any, any>][] = []): ProgramVersion & { count: number } {
  const p = {
    prog: TEST_PROG,
    vers,
    count: 0,
    procedures: new Map<number, Procedure<any, any>>([
      [0, { name: 'NULL', decodeArgs: () => undefined, encodeResult: () => undefined, handle: () => undefined, idempotent: true }],
      [1, { name: 'ECHO', decodeArgs: (r: XdrReader) => r.string(1024), encodeResult: (w: XdrWriter, s: string) => void w.string(s), handle: (s: string) => s, idempotent: true }],
      [2, {
        name: 'WHERE',
        decodeArgs: () => undefined,
        encodeResult: (w: XdrWriter, c: CallContext) => void w.string(`${c.transport} ${c.local.address}:${c.local.port} ${c.peer.address} ${c.cred.flavor}`),
        handle: (_: unknown, c: CallContext) => c,
        idempotent: true,
      }],
      [3, { name: 'CRASH', decodeArgs: () => undefined, encodeResult: () => undefined, handle: () => { throw new Error('boom'); } }],
      [4, { name: 'COUNT', decodeArgs: () => undefined, encodeResult: (w: XdrWriter, n: number) => void w.uint(n), handle: () => ++p.count }],
      ...extra,
    ]),
  };
  return p;
}

const PROBE_XID = 0x50524f42;

/**
 * Sends one datagram, then a NULL call of TEST_PROG from the same port, and resolves with the
 * replies that came before the NULL's: the server answers one socket's datagrams in order, so
 * these are all it answered to the first (none: it sent nothing), without waiting out a timeout.
 */
export function udpAnswers(host: string, port: number, msg: Buffer, ms = 5_000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const replies: Buffer[] = [];
    const t = setTimeout(() => { s.close(); reject(new Error(`no answer to the probe from ${host}:${port} within ${ms} ms`)); }, ms);
    s.on('message', (m) => {
      if (m.length < 4 || m.readUInt32BE(0) !== PROBE_XID) return void replies.push(m);
      clearTimeout(t);
      s.close();
      resolve(replies);
    });
    s.send(msg, port, host);
    s.send(encodeCall({ xid: PROBE_XID, prog: TEST_PROG, vers: 1, proc: 0, cred: NULL_AUTH, verf: NULL_AUTH }), port, host);
  });
}

/** A raw TCP connection collecting everything it receives, with a promise for its close. */
export function rawTcp(host: string, port: number): Promise<{ socket: net.Socket; received: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port });
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, received: () => Buffer.concat(chunks), closed }));
    socket.once('error', reject);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

