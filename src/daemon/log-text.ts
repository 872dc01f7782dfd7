// `logFormat: text`: pino's JSON lines as lines for people (the console, journald): the time, a
// level word instead of pino's number, the part, the message, then the other fields as key=value.
// JSON stays the default, for files and log shippers.

const LEVEL_WORDS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Fields every line has, or that the line shows already. */
const SHOWN = new Set(['level', 'time', 'msg', 'part', 'pid', 'hostname']);

const fieldValue = (v: unknown): string => (typeof v === 'string' ? (/[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v) : JSON.stringify(v));

/** One pino JSON line as text; anything that is not JSON passes unchanged. */
export function textLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = LEVEL_WORDS[o.level as number] ?? String(o.level);
  const part = typeof o.part === 'string' ? `[${o.part}] ` : '';
  const fields = Object.entries(o).filter(([k, v]) => !SHOWN.has(k) && v !== undefined).map(([k, v]) => `${k}=${fieldValue(v)}`);
  return `${typeof o.time === 'string' ? `${o.time} ` : ''}${level.padEnd(5)} ${part}${String(o.msg ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

/** A pino destination writing text lines to `out` (pino's own, synchronous: a fatal line is out before the exit). */
export const textDestination = (out: { write(s: string): unknown }): { write(line: string): void } => ({ write: (line) => void out.write(textLine(line)) });
