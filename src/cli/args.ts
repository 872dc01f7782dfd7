// What the three commands share: argument parsing and how a commander program ends.
import { InvalidArgumentError, type Command } from 'commander';

/** A positive number argument (seconds, counts). */
export const positive = (v: string): number => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError(`"${v}" is not a positive number`);
  return n;
};

/** commander's own exits (help, version, a usage error) as exit codes; 0 for help and version. */
export function commanderExit(err: unknown): number | undefined {
  const e = err as { code?: string; exitCode?: number };
  if (!e.code?.startsWith('commander.')) return undefined;
  return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : (e.exitCode ?? 2) || 2;
}

/** Runs a program of subcommands: its exit code, and errors as one line on stderr, exit 1. */
export async function runCommand(name: string, program: Command, argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const code = commanderExit(err);
    if (code !== undefined) return code;
    process.stderr.write(`${name}: ${(err as Error).message}\n`);
    return 1;
  }
}
