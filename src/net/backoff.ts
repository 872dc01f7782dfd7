// The one exponential backoff, after grpc-js's BackoffTimeout: the first wait is `initialMs`
// (exactly, unless jitterFirst), each later one the previous unjittered wait times `factor`,
// capped at `maxMs`, then moved by up to ±jitter of itself (never past the cap). Jitter spreads
// retries that started together (SM_NOTIFY to thousands of hosts, the GRANTED callbacks of one
// drop) instead of having them all come back in the same millisecond. Unlike grpc-js the
// jitter does not compound: the base sequence stays initial·factorⁿ.

export interface BackoffOptions {
  /** The first wait: exact, so that a promised first retry (200 ms) is kept. */
  initialMs: number;
  /** Jitter the first wait too: for retries that failed together and would all come back at once. Default false. */
  jitterFirst?: boolean;
  /** Default 2. */
  factor?: number;
  /** Largest wait. Default: no cap. */
  maxMs?: number;
  /** Fraction each wait (after the first, unless jitterFirst) may move either way. Default 0.2 (grpc's). */
  jitter?: number;
  /** Uniform in [0, 1); tests inject their own. Default Math.random. */
  random?: () => number;
}

export class Backoff {
  private readonly factor: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly random: () => number;
  /** The unjittered wait next() returns next. */
  private base: number;
  private exact: boolean;

  constructor(private readonly opts: BackoffOptions) {
    this.factor = opts.factor ?? 2;
    this.maxMs = opts.maxMs ?? Infinity;
    this.jitter = opts.jitter ?? 0.2;
    this.random = opts.random ?? Math.random;
    if (!(opts.initialMs >= 0) || !(this.factor >= 1) || !(this.maxMs >= 0) || !(this.jitter >= 0 && this.jitter <= 1)) {
      throw new RangeError(`bad backoff: initial ${opts.initialMs} ms, factor ${this.factor}, cap ${this.maxMs} ms, jitter ${this.jitter}`);
    }
    this.base = Math.min(opts.initialMs, this.maxMs);
    this.exact = !opts.jitterFirst;
  }

  /** The wait before the next try, in ms; each call moves one step along. */
  next(): number {
    const base = this.base;
    this.base = Math.min(base * this.factor, this.maxMs);
    if (this.exact) {
      this.exact = false;
      return base;
    }
    return Math.min(this.maxMs, base * (1 + this.jitter * (2 * this.random() - 1)));
  }

  /** Back to the first wait (the peer answered). */
  reset(): void {
    this.base = Math.min(this.opts.initialMs, this.maxMs);
    this.exact = !this.opts.jitterFirst;
  }
}
