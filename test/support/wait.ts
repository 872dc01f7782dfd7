// Bounded waits for what a test expects to happen, instead of sleeping a fixed time and hoping.
const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves with f()'s first truthy value, checked every few ms; rejects naming `what` after `ms`. */
export async function waitFor<T>(what: string, f: () => T | undefined | null | false, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await tick(10);
  }
}
