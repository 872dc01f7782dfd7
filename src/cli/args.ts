// What the three commands share: argument parsing, --version, and how a command ends. Exit codes
// follow sysexits(3): 64 (EX_USAGE) for a usage error (unknown flag, missing argument, wrong
// combination), 78 (EX_CONFIG) for a bad configuration; lockdropd counts a bad flag value as
// configuration, so its unit (RestartPreventExitStatus=78) does not restart-loop on it. Under
// --json an error is one JSON object on stderr: {"error": "...", "exitCode": N}.
import { InvalidArgumentError, type Command } from 'commander';
import { VERSION } from '../daemon/version';

export const EX_USAGE = 64;
export const EX_CONFIG = 78;

/** A usage error found after parsing (e.g. "drop needs exactly one of ..."): exit 64. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A flag's value that is the next flag (`--grace --print-config`): the value is missing, a usage
 * error (64), not a bad value (78 for lockdropd).
 */
function notAnOption(v: string): void {
  if (!/^--?[A-Za-z]/.test(v)) return;
  const err = new InvalidArgumentError(`it is missing ("${v}" is an option)`);
  err.exitCode = EX_USAGE;
  throw err;
}

/** A text argument (a path, an address): anything but the next flag. */
export const text = (v: string): string => {
  notAnOption(v);
  return v;
};

/** A positive number argument (seconds, counts). */
export const positive = (v: string): number => {
  notAnOption(v);
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError(`"${v}" is not a positive number`);
  return n;
};

/** A non-negative integer argument (ports, milliseconds, ids). */
export const nonNegativeInteger = (v: string): number => {
  notAnOption(v);
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`"${v}" is not a non-negative integer`);
  return Number(v);
};

/** A repeatable option that also takes comma-separated values (`--address A --address B,C`): never swallows what follows. */
export const collectList = (v: string, previous: string[] | undefined): string[] => [...(previous ?? []), ...text(v).split(',').map((s) => s.trim()).filter(Boolean)];

/** Is --json among the arguments (before or after the subcommand)? Decides how errors are written. */
export const wantsJson = (argv: readonly string[]): boolean => argv.slice(2).includes('--json');

/**
 * --version, and commander's error output: plain text with help after it, or nothing under
 * --json (the error is then written as JSON by the caller). Call before adding subcommands:
 * they inherit the output settings.
 */
export function withConventions(program: Command, json: boolean): Command {
  program.version(`${program.name()} ${VERSION}`, '-V, --version', 'print the version and exit');
  if (json) program.configureOutput({ writeErr: () => undefined, outputError: () => undefined });
  else program.showHelpAfterError(`(${program.name()} --help for usage)`);
  return program.exitOverride();
}

/**
 * commander's own exits as exit codes: 0 for help and version, `badValue` for a flag value its
 * parser refused (a missing one is 64), 64 for every other usage error; undefined for an error that is not commander's.
 */
export function commanderExit(err: unknown, badValue = EX_USAGE): number | undefined {
  const e = err as { code?: string; exitCode?: number };
  if (!e.code?.startsWith('commander.')) return undefined;
  if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
  return e.code === 'commander.invalidArgument' && e.exitCode !== EX_USAGE ? badValue : EX_USAGE;
}

/** Writes a failure the way the command's output is read: a line for people, JSON for scripts. */
export function reportError(name: string, message: string, exitCode: number, json: boolean, extra: Record<string, unknown> = {}): number {
  const text = message.replace(/^error: /, '');
  process.stderr.write(json ? JSON.stringify({ error: text, exitCode, ...extra }) + '\n' : `${name}: ${text}\n`);
  return exitCode;
}

/** Runs a program of subcommands and returns its exit code; errors exit 1 (usage errors 64). */
export async function runCommand(name: string, program: Command, argv: string[], json = wantsJson(argv)): Promise<number> {
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const code = commanderExit(err);
    if (code === 0) return 0;
    // commander printed its own message unless under --json.
    if (code !== undefined) return json ? reportError(name, (err as { code?: string }).code === 'commander.help' ? 'a command is needed (see --help)' : (err as Error).message, code, true) : code;
    // A refused configuration (e.g. `reload` of a bad file) lists its bad keys: EX_CONFIG.
    const problems = (err as { problems?: string[] }).problems ?? [];
    const exit = err instanceof UsageError ? EX_USAGE : problems.length ? EX_CONFIG : 1;
    return reportError(name, (err as Error).message, exit, json, problems.length ? { problems } : {});
  }
}
