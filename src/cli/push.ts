/**
 * `wasm-engine push FILE.wasm REF [--format docker|wasm]`: builds the image in memory and pushes it,
 * with the engine's credential sources (its credentials file, the Docker config and its helpers)
 * plus `--username` and `--password-stdin` as `docker login` takes them. Registry settings are
 * read like the engine's: flag, then environment, then default.
 */
import { readFile } from 'node:fs/promises';
import { CommandUsageError, parseCommandArgs } from './parse-args.js';
import { registryCredentialProvider } from '../config/registry-settings.js';
import { SETTINGS, type EngineConfig } from '../config/settings.js';
import { isEngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  buildImage,
  chainCredentials,
  createImagePusher,
  IMAGE_FORMATS,
  imageFileName,
  parsePushReference,
  staticCredentials,
  type BuiltImage,
  type ImageFormat,
} from '../registry/index.js';
import { createProgressReporter, formatBytes } from './progress.js';
import { USAGE } from './usage.js';

export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

export const processIo = (): CommandIo => ({ stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });

export { CommandUsageError };

/** Prints a usage error the way the other commands do and gives exit code 2. */
export function usageFailure(io: CommandIo, message: string): number {
  io.stderr.write(`wasm-engine: ${message}\n\n${USAGE}\n`);
  return 2;
}

/** Prints what went wrong and gives exit code 1 (a usage error gives 2). */
export function commandFailure(io: CommandIo, err: unknown): number {
  if (err instanceof CommandUsageError) return usageFailure(io, err.message);
  io.stderr.write(`wasm-engine: ${isEngineError(err) ? err.message : (err as Error).message ?? String(err)}\n`);
  return 1;
}

/** Warnings from the registry side (a missing credential helper) as plain lines; the rest is quiet. */
export function cliLogger(io: CommandIo): Logger {
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: (_obj, msg) => {
      io.stderr.write(`wasm-engine: warning: ${msg ?? ''}\n`);
    },
    error: (_obj, msg) => {
      io.stderr.write(`wasm-engine: error: ${msg ?? ''}\n`);
    },
    child: () => logger,
  };
  return logger;
}

export function parseFormat(raw: string | undefined): ImageFormat {
  if (raw === undefined) return 'docker';
  if ((IMAGE_FORMATS as readonly string[]).includes(raw)) return raw as ImageFormat;
  throw new CommandUsageError(`--format must be one of ${IMAGE_FORMATS.join(', ')}, got ${raw}`);
}

/** Reads the module file and builds the image; a file that is not valid WebAssembly is refused. */
export async function imageFromFile(file: string, format: ImageFormat, mediaTypes: 'docker' | 'oci' = 'docker'): Promise<BuiltImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  return buildImage(bytes, { format, fileName: imageFileName(file), mediaTypes });
}

type RegistryKey = 'insecureRegistries' | 'registryCredentials' | 'dockerConfig' | 'registryConnectTimeoutMs' | 'registryRetries';
const REGISTRY_KEYS: readonly RegistryKey[] = ['insecureRegistries', 'registryCredentials', 'dockerConfig', 'registryConnectTimeoutMs', 'registryRetries'];

/** The engine's registry settings, resolved as the engine does: flag, first environment variable set, default. */
function registrySettings(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): Pick<EngineConfig, RegistryKey> {
  const resolved: Partial<Record<RegistryKey, unknown>> = {};
  for (const key of REGISTRY_KEYS) {
    const setting = SETTINGS[key];
    const flag = flags[setting.flag];
    let value: unknown;
    if (typeof flag === 'string') value = setting.parse(flag, `--${setting.flag}`);
    else {
      const name = setting.env.find((n) => env[n] !== undefined && env[n] !== '');
      value = name === undefined ? setting.default() : setting.parse(env[name] as string, name);
    }
    resolved[key] = value;
  }
  return resolved as Pick<EngineConfig, RegistryKey>;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer | string>) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

const PUSH_OPTIONS = {
  format: { type: 'string' },
  json: { type: 'boolean', default: false },
  username: { type: 'string' },
  'password-stdin': { type: 'boolean', default: false },
  'timeout-ms': { type: 'string' },
  'insecure-registries': { type: 'string' },
  'registry-credentials': { type: 'string' },
  'docker-config': { type: 'string' },
  'registry-connect-timeout-ms': { type: 'string' },
  'registry-retries': { type: 'string' },
} as const;

export async function pushCommand(argv: string[], io: CommandIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseCommandArgs({ args: argv, options: PUSH_OPTIONS, allowPositionals: true, strict: true });
    if (positionals.length !== 2) throw new CommandUsageError('push takes FILE.wasm REF');
    const [file, reference] = positionals as [string, string];
    const format = parseFormat(values.format);
    if (values['password-stdin'] && values.username === undefined) throw new CommandUsageError('--password-stdin needs --username');
    let timeoutMs: number | undefined;
    if (values['timeout-ms'] !== undefined) {
      timeoutMs = Number(values['timeout-ms']);
      if (!/^\d+$/.test(values['timeout-ms']) || timeoutMs < 1) throw new CommandUsageError('--timeout-ms must be a whole number of milliseconds');
    }
    const target = parsePushReference(reference);
    const settings = registrySettings(values, io.env);
    const logger = cliLogger(io);

    let credentials = registryCredentialProvider(settings, logger);
    if (values.username !== undefined) {
      const password = values['password-stdin'] ? (await readAll(io.stdin)).replace(/\r?\n$/, '') : '';
      const given = staticCredentials({ [target.registry]: { username: values.username, password } }, 'the --username option');
      credentials = chainCredentials([given, credentials]);
    }

    const image = await imageFromFile(file, format);
    // Progress goes to stderr so that stdout carries only the result (and --json stays parseable).
    const progress = createProgressReporter(io.stderr);
    const pusher = createImagePusher({
      logger,
      credentials,
      insecureRegistries: settings.insecureRegistries,
      connectTimeoutMs: settings.registryConnectTimeoutMs,
      retries: settings.registryRetries,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      onProgress: (event) => progress.onProgress(event),
    });
    try {
      const started = performance.now();
      const result = await pusher.push(image, reference);
      const ms = Math.round(performance.now() - started);
      if (values.json) {
        io.stdout.write(
          `${JSON.stringify({ reference: target.canonical, pinned: result.pinned, digest: result.digest, mediaType: result.mediaType, format, file: image.fileName, uploaded: result.uploaded, skipped: result.skipped, bytesUploaded: result.bytesUploaded, ms })}\n`,
        );
      } else {
        io.stdout.write(`pushed ${result.pinned}\n`);
        io.stderr.write(
          `${format} image of ${image.fileName}: ${result.uploaded} blob(s) uploaded (${formatBytes(result.bytesUploaded)}), ${result.skipped} already there, in ${ms} ms\n`,
        );
      }
      return 0;
    } finally {
      await pusher.close();
    }
  } catch (err) {
    return commandFailure(io, err);
  }
}
