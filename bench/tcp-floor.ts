// The floor of any Node.js TCP server with one read and one write per call (issue 15): it answers
// each record it reads with a fixed granted nlm4_res under the call's xid, without decoding,
// dispatching or a lock table. Driven like bench/nlm-lock.ts serve (prints {port, pid}) by the C
// generator (bench/profile-tcp.sh's, one connection and one call in flight per owner), its CPU per
// call is what the socket path alone costs: the kernel's and Node's stream layer's.
//
//   npx tsx bench/tcp-floor.ts [ADDRESS]
import net from 'node:net';
import { LAST_FRAGMENT, RecordDecoder } from '../src/rpc';

// The record mark, then xid, REPLY, MSG_ACCEPTED, verifier AUTH_NONE, SUCCESS, a 4-byte cookie, granted.
const REPLY = Buffer.alloc(40);
REPLY.writeUInt32BE(LAST_FRAGMENT + 36, 0);
REPLY.writeUInt32BE(1, 8);
REPLY.writeUInt32BE(4, 28);

const server = net.createServer({ noDelay: true }, (socket) => {
  const decoder = new RecordDecoder(1 << 20);
  socket.on('data', (chunk) => decoder.feed(chunk, (buf, start) => {
    const r = Buffer.from(REPLY);
    buf.copy(r, 4, start, start + 4);
    socket.write(r);
  }));
  socket.on('error', () => socket.destroy());
});
server.listen({ host: process.argv[2] ?? '127.0.0.1', port: 0 }, () => console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port, pid: process.pid })));
