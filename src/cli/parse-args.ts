/** Command-line parsing shared by every subcommand: a bad flag is a usage error (exit code 2). */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class CommandUsageError extends Error {}

export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new CommandUsageError((err as Error).message);
  }
}
