// Each local address's fair share of the one event loop: its lane. Calls of an address run as
// they are read, up to an allowance per turn; the rest wait in its lane, and the lanes are served
// round-robin after the turn's reads (RpcServerOptions.addressCallsPerTurn says why).

/** A local address's share of the event loop. */
export interface Lane {
  /** Calls run as they were read since the lanes were last served. */
  ran: number;
  /** Work waiting its round, oldest first: a connection's next calls, or a datagram's call. */
  waiting: (() => void)[];
  /** Datagrams among `waiting` (they count as UDP calls in progress). */
  datagrams: number;
}

export class Lanes {
  /** Served in the order the addresses came. */
  private readonly lanes = new Set<Lane>();
  /** The lanes are to be served in this turn (one setImmediate for all of them). */
  private scheduled = false;

  /**
   * `callsPerTurn`: calls of one lane run as read in one turn; `sliceMs`: how long the lanes are
   * served in one turn before the loop reads its sockets again.
   */
  constructor(private readonly callsPerTurn: number, private readonly sliceMs: number) {}

  /** A lane for an address that arrived. */
  open(): Lane {
    const lane: Lane = { ran: 0, waiting: [], datagrams: 0 };
    this.lanes.add(lane);
    return lane;
  }

  /** The address went: its waiting work is never served. */
  close(lane: Lane): void {
    this.lanes.delete(lane);
  }

  /** Whether a call of this lane read now may run at once (it counts), or must wait its round. */
  runNow(lane: Lane): boolean {
    if (lane.ran >= this.callsPerTurn) return false;
    // The allowance is per turn: the lanes' round in this turn starts it again.
    if (lane.ran++ === 0) this.schedule();
    return true;
  }

  /** Work waiting in a lane gets its round after this turn's reads. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.serve);
  }

  /**
   * After the turn's reads: every lane's work round-robin, one item (a connection's next calls,
   * up to callsPerTurn, or a datagram) per lane per round, for sliceMs; what is left waits for the
   * next turn, after the loop has read its sockets again. Every lane's allowance of calls run as
   * read starts again.
   */
  private readonly serve = (): void => {
    const until = performance.now() + this.sliceMs;
    let left = false;
    do {
      left = false;
      for (const lane of this.lanes) {
        const next = lane.waiting.shift();
        if (!next) continue;
        next();
        if (lane.waiting.length > 0) left = true;
      }
    } while (left && performance.now() < until);
    left = false;
    for (const lane of this.lanes) {
      lane.ran = 0;
      if (lane.waiting.length > 0) left = true;
    }
    if (left) setImmediate(this.serve);
    else this.scheduled = false;
  };
}
