/**
 * The `wasm-engine` command: `serve` runs the engine; the other commands speak to a running one.
 * This is the only place that writes to the terminal.
 */
import type { ParseArgsConfig } from 'node:util';
import { CommandUsageError, parseCommandArgs } from './parse-args.js';
import { CONFIG_FLAG, loadConfig } from '../config/config-file.js';
import { SETTINGS } from '../config/settings.js';
import { isEngineError } from '../errors.js';
import { callEngine, EngineUnreachable, type ApiAnswer } from './client.js';
import { packCommand } from './pack.js';
import { pushCommand } from './push.js';
import { buildVersion } from '../build-info.js';
import { USAGE, commandUsage } from './usage.js';


const out = (text: string): void => {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
};
const err = (text: string): void => {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
};

async function serve(argv: string[]): Promise<number> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const setting of Object.values(SETTINGS)) options[setting.flag] = { type: 'string' };
  options[CONFIG_FLAG] = { type: 'string' };
  const { values, positionals } = parseCommandArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (positionals.length > 0) throw new CommandUsageError(`serve takes no arguments, got ${positionals.join(' ')}`);
  let config;
  try {
    config = loadConfig(values as Record<string, string | undefined>, process.env);
  } catch (e) {
    err(`wasm-engine: ${(e as Error).message}`);
    return 2;
  }
  // Loaded here, not at the top: the engine's server, runtime and metrics take a few hundred
  // milliseconds to import, which every client command (push, list, …) would pay for nothing.
  const { startEngine, createLogger } = await import('../app.js');
  const logger = createLogger(config);
  installLastResort(logger);
  let running;
  // Heard from the start: a signal while the engine starts (it readies restored functions in the
  // sandboxes before it says it listens) cuts that short, and the engine stops as it would after.
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  let stopAsked: NodeJS.Signals | undefined;
  void signalled.then((signal) => (stopAsked = signal));
  try {
    running = await startEngine(config, logger, { interrupted: signalled });
  } catch (e) {
    // A stop asked for while the engine waited (for an unreachable store, say) ends that wait with
    // an error: that is the stop succeeding, not a failure to start.
    if (stopAsked !== undefined) {
      logger.info({ signal: stopAsked, err: e }, 'stopped before the engine had started');
      return 0;
    }
    logger.fatal({ err: e }, `could not start: ${(e as Error).message}`);
    return 1;
  }
  const signal = await signalled;
  logger.info({ signal }, 'shutting down');
  await running.stop().catch((e: unknown) => logger.error({ err: e }, 'error while shutting down'));
  logger.info({}, 'stopped');
  return 0;
}

/**
 * What no request path should ever reach, logged as fatal with what is known of it. A rejected
 * promise nobody handled is a bug in the path that made it, whose request may go unanswered (its
 * connection's timeouts end it), while everything else is intact: the engine keeps serving rather
 * than let one request take every tenant down (Node's default would exit). An uncaught exception
 * unwound a stack midway through something, so the process's state is unknown (Node documents
 * that resuming is unsafe): logged, then the process exits 1 for its supervisor to restart it on
 * the store, which is crash-safe.
 */
function installLastResort(logger: { fatal: (obj: object, msg: string) => void }): void {
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason, origin: 'unhandledRejection' }, `unhandled rejection (a bug; still serving): ${describe(reason)}`);
  });
  process.on('uncaughtException', (error, origin) => {
    logger.fatal({ err: error, origin }, `uncaught exception (a bug; exiting): ${describe(error)}`);
    process.exit(1);
  });
}

function describe(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

const CLIENT_OPTIONS = {
  url: { type: 'string', default: 'http://127.0.0.1:10000' },
  json: { type: 'boolean', default: false },
  wasi: { type: 'boolean' },
  'no-wasi': { type: 'boolean' },
  entrypoint: { type: 'string' },
  'timeout-ms': { type: 'string' },
  'memory-limit-mb': { type: 'string' },
  'max-output-bytes': { type: 'string' },
  env: { type: 'string', multiple: true },
} as const;

function expectPositionals(command: string, got: string[], count: number, names: string): void {
  if (got.length !== count) throw new CommandUsageError(`${command} takes ${names}`);
}

function intOption(name: string, raw: string | undefined): Record<string, number> {
  if (raw === undefined) return {};
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n)) throw new CommandUsageError(`--${name} must be a whole number`);
  return { [name.replace(/-/g, '_')]: n };
}

function invokeArgs(pairs: string[]): Record<string, string> | string[] {
  if (pairs.length > 0 && pairs.every((p) => p.includes('='))) {
    const args: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      args[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    return args;
  }
  if (pairs.some((p) => p.includes('='))) throw new CommandUsageError('invoke takes either all k=v pairs or all positional values');
  return pairs;
}

async function client(command: string, argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, options: CLIENT_OPTIONS, allowPositionals: true, strict: true });
  const url = values.url as string;
  let answer: ApiAnswer;
  let render: (body: Record<string, unknown>) => string;
  switch (command) {
    case 'deploy': {
      expectPositionals('deploy', positionals, 2, 'NAME IMAGE');
      if (values.wasi && values['no-wasi']) throw new CommandUsageError('give --wasi or --no-wasi, not both');
      const env: Record<string, string> = {};
      for (const pair of (values.env as string[] | undefined) ?? []) {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new CommandUsageError(`--env takes K=V, got ${pair}`);
        env[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      answer = await callEngine(url, 'POST', '/function/deploy', {
        function_name: positionals[0],
        function_image: positionals[1],
        ...(values.wasi ? { wasi_cap: true } : values['no-wasi'] ? { wasi_cap: false } : {}),
        ...(values.entrypoint === undefined ? {} : { entrypoint: values.entrypoint }),
        ...intOption('timeout-ms', values['timeout-ms'] as string | undefined),
        ...intOption('memory-limit-mb', values['memory-limit-mb'] as string | undefined),
        ...intOption('max-output-bytes', values['max-output-bytes'] as string | undefined),
        ...(Object.keys(env).length > 0 ? { env } : {}),
      });
      render = (b) => String(b.message);
      break;
    }
    case 'delete':
      expectPositionals('delete', positionals, 1, 'NAME');
      answer = await callEngine(url, 'POST', '/function/delete', { function_name: positionals[0] });
      render = (b) => String(b.message);
      break;
    case 'list':
      expectPositionals('list', positionals, 0, 'no arguments');
      answer = await callEngine(url, 'GET', '/function/list');
      render = (b) => renderList(b.functions as Record<string, unknown>[]);
      break;
    case 'query':
      expectPositionals('query', positionals, 1, 'NAME');
      answer = await callEngine(url, 'POST', '/function/query', { function_name: positionals[0] });
      render = (b) =>
        Object.entries(b.function as Record<string, unknown>)
          .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join('\n');
      break;
    case 'invoke': {
      if (positionals.length < 1) throw new CommandUsageError('invoke takes NAME [k=v ...]');
      const [name, ...rest] = positionals;
      answer = await callEngine(url, 'POST', '/function/invoke', { function_name: name, args: invokeArgs(rest) });
      render = (b) => String(b.output);
      break;
    }
    default:
      throw new CommandUsageError(`unknown command ${command}`);
  }
  if (values.json) out(JSON.stringify(answer.body));
  if (answer.status !== 200) {
    const error = answer.body.error as { code?: string; message?: string } | undefined;
    if (!values.json) err(`error ${answer.status} ${error?.code ?? ''}: ${error?.message ?? String(answer.body.message)}`);
    return 1;
  }
  if (!values.json) out(render(answer.body));
  return 0;
}

function renderList(functions: Record<string, unknown>[]): string {
  if (functions.length === 0) return 'no functions deployed';
  const rows = [['NAME', 'ABI', 'WASI', 'SIZE', 'IMAGE'], ...functions.map((f) => [
    String(f.func_name), String(f.abi), String(f.wasi_cap), String(f.size), String(f.func_image_name),
  ])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    const asked = command === 'help' && rest[0] !== undefined ? commandUsage(rest[0]) : undefined;
    (command === undefined ? err : out)(asked ?? USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === 'version') {
    const { release, sha } = buildVersion();
    out(`wasm-engine ${release} (commit ${sha})`);
    return 0;
  }
  // `--help` or `-h` anywhere before `--`: that command's usage, whatever else the line says.
  const end = rest.indexOf('--');
  const help = (end < 0 ? rest : rest.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
  const usage = help ? commandUsage(command) : undefined;
  if (usage !== undefined) {
    out(usage);
    return 0;
  }
  try {
    if (command === 'serve') return await serve(rest);
    if (command === 'push') return await pushCommand(rest);
    if (command === 'pack') return await packCommand(rest);
    return await client(command, rest);
  } catch (e) {
    if (e instanceof CommandUsageError) {
      err(`wasm-engine: ${e.message}\n\n${commandUsage(command) ?? USAGE}`);
      return 2;
    }
    if (e instanceof EngineUnreachable) {
      err(`wasm-engine: ${e.message}`);
      return 1;
    }
    err(`wasm-engine: ${isEngineError(e) ? e.message : String((e as Error).stack ?? e)}`);
    return 1;
  }
}
