// Shared pieces for the rpc tests: a tiny test program and raw sockets for hand-made input.
import dgram from 'node:dgram';
import net from 'node:net';
import type { XdrReader, XdrWriter } from '../../src/xdr';
import { type CallContext, type ProgramVersion, type Procedure } from '../../src/rpc';

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

/** Sends one datagram and waits for one reply (or undefined after ms). */
export function udpExchange(host: string, port: number, msg: Buffer, ms = 500): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const t = setTimeout(() => { s.close(); resolve(undefined); }, ms);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); });
    s.send(msg, port, host);
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

