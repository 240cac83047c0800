/**
 * Where registry credentials come from, the way docker and skopeo look for them: a Docker
 * `config.json` (`credHelpers[host]` wins, then `credsStore`, then `auths[host]` with `auth` or
 * `username`/`password`, or an `identitytoken`), credential helpers run as
 * `docker-credential-NAME get`, and a chain that asks several sources in order (the engine's own
 * credentials file first, then the user's Docker config).
 */
import { spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { CredentialProvider, RegistryCredentials } from './auth.js';
import { DOCKER_HUB } from './reference.js';

/** One `auths` entry as Docker writes it. */
export interface DockerAuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** The parts of a Docker `config.json` that hold credentials. */
export interface DockerConfigData {
  auths: Record<string, DockerAuthEntry>;
  credHelpers: Record<string, string>;
  credsStore?: string;
}

/** The key Docker uses for Docker Hub in `auths` and credential helpers. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
/** Helper names become part of an executable name: nothing that could reach another path. */
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const HELPER_TIMEOUT_MS = 10_000;
const MAX_HELPER_OUTPUT = 64 * 1024;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses the text of a Docker config file; throws an Error saying what is wrong (never quoting a
 * secret). Unknown top-level fields (`proxies`, `psFormat`, …) are ignored, as docker does.
 */
export function parseDockerConfig(text: string): DockerConfigData {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`it is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(json)) throw new Error('it is not a JSON object');
  const data: DockerConfigData = { auths: {}, credHelpers: {} };
  if (json.auths !== undefined) {
    if (!isObject(json.auths)) throw new Error('"auths" is not an object');
    for (const [key, value] of Object.entries(json.auths)) {
      if (!isObject(value)) throw new Error(`auths[${JSON.stringify(key)}] is not an object`);
      const entry: DockerAuthEntry = {};
      for (const field of ['auth', 'username', 'password', 'identitytoken'] as const) {
        const v = value[field];
        if (v === undefined || v === null) continue;
        if (typeof v !== 'string') throw new Error(`auths[${JSON.stringify(key)}].${field} is not a string`);
        if (v !== '') entry[field] = v;
      }
      if (entry.auth !== undefined) {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
        if (!decoded.includes(':')) throw new Error(`auths[${JSON.stringify(key)}].auth is not base64 of "user:password"`);
      }
      data.auths[key] = entry;
    }
  }
  if (json.credHelpers !== undefined) {
    if (!isObject(json.credHelpers)) throw new Error('"credHelpers" is not an object');
    for (const [key, value] of Object.entries(json.credHelpers)) {
      if (typeof value !== 'string' || !HELPER_NAME.test(value)) {
        throw new Error(`credHelpers[${JSON.stringify(key)}] is not a credential helper name`);
      }
      data.credHelpers[key] = value;
    }
  }
  if (json.credsStore !== undefined && json.credsStore !== '') {
    if (typeof json.credsStore !== 'string' || !HELPER_NAME.test(json.credsStore)) throw new Error('"credsStore" is not a credential helper name');
    data.credsStore = json.credsStore;
  }
  return data;
}

/** Docker's ConvertToHostname: `https://host:5000/v1/` → `host:5000`. */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').split('/')[0]!.toLowerCase();
}

function sameRegistry(key: string, registry: string): boolean {
  const host = keyHost(key);
  if (registry === DOCKER_HUB) return DOCKER_HUB_ALIASES.has(host);
  return host === registry.toLowerCase();
}

/** The entry of a key table (`auths`, `credHelpers`) for a registry: exact key first, then any alias. */
function lookup<T>(table: Record<string, T>, registry: string): T | undefined {
  const exact = registry === DOCKER_HUB ? DOCKER_HUB_AUTH_KEY : registry;
  if (table[exact] !== undefined) return table[exact];
  const key = Object.keys(table).find((k) => sameRegistry(k, registry));
  return key === undefined ? undefined : table[key];
}

/** What a credential helper answered, or undefined when it has nothing for that server. */
export interface HelperAnswer {
  username: string;
  secret: string;
}

/** Runs `docker-credential-NAME get` for a server; replaceable in tests. */
export type HelperRunner = (helper: string, serverUrl: string) => Promise<HelperAnswer | undefined>;

export class CredentialHelperMissing extends Error {}

/** The real helper protocol: server URL on stdin, `{ServerURL, Username, Secret}` on stdout. */
export const runCredentialHelper: HelperRunner = (helper, serverUrl) =>
  new Promise((resolve, reject) => {
    const program = `docker-credential-${helper}`;
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: HELPER_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    const keep = (current: string, chunk: Buffer): string => (current.length < MAX_HELPER_OUTPUT ? current + chunk.toString('utf8') : current);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = keep(stdout, chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = keep(stderr, chunk);
    });
    child.stdin.on('error', () => {}); // a helper that exits without reading stdin is answered by its exit code
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new CredentialHelperMissing(`${program} is not on PATH`));
      else reject(new Error(`${program} could not run: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      if (signal !== null) {
        reject(new Error(`${program} was stopped by ${signal}${signal === 'SIGTERM' ? ` (no answer within ${HELPER_TIMEOUT_MS} ms)` : ''}`));
        return;
      }
      if (code !== 0) {
        const said = `${stdout} ${stderr}`.trim();
        // The helper protocol's "not found" answer: no credentials for this server, not a failure.
        if (/credentials not found/i.test(said)) resolve(undefined);
        else reject(new Error(`${program} exited with ${code}: ${said.split('\n')[0]?.slice(0, 200) ?? ''}`));
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        reject(new Error(`${program} answered something that is not JSON`));
        return;
      }
      const { Username, Secret } = isObject(json) ? json : {};
      if (typeof Secret !== 'string' || Secret === '') {
        resolve(undefined);
        return;
      }
      resolve({ username: typeof Username === 'string' ? Username : '', secret: Secret });
    });
    child.stdin.end(serverUrl);
  });

export interface DockerConfigProviderOptions {
  /** The config file; read again whenever it changes, so a `docker login` takes effect at once. */
  file?: string;
  /** Or a configuration already parsed (the engine's own credentials file, read once at start). */
  data?: DockerConfigData;
  /** Names the source in messages, e.g. `Docker config /home/u/.docker/config.json`. */
  source: string;
  logger: Logger;
  runHelper?: HelperRunner;
}

/**
 * Credentials from a Docker config: `credHelpers[host]`, then `credsStore`, then `auths[host]`.
 * A helper that is not installed is skipped with a warning (docker would fail; an engine serving
 * other registries should not), and a helper with nothing for the host falls back to `auths`.
 */
export function dockerConfigCredentials(options: DockerConfigProviderOptions): CredentialProvider {
  const runHelper = options.runHelper ?? runCredentialHelper;
  let cached: { mtimeMs: number; size: number; data: DockerConfigData } | undefined;

  const load = async (): Promise<DockerConfigData | undefined> => {
    if (options.data) return options.data;
    const file = options.file;
    if (file === undefined) return undefined;
    let info;
    try {
      info = await stat(file);
    } catch {
      return undefined; // no config file: no credentials, as for docker
    }
    if (cached && cached.mtimeMs === info.mtimeMs && cached.size === info.size) return cached.data;
    let data: DockerConfigData;
    try {
      data = parseDockerConfig(await readFile(file, 'utf8'));
    } catch (err) {
      throw new EngineError('REGISTRY_AUTH_FAILED', `cannot use ${options.source}: ${(err as Error).message}`);
    }
    cached = { mtimeMs: info.mtimeMs, size: info.size, data };
    return data;
  };

  const fromHelper = async (helper: string, registry: string): Promise<RegistryCredentials | undefined> => {
    const serverUrl = registry === DOCKER_HUB ? DOCKER_HUB_AUTH_KEY : registry;
    let answer: HelperAnswer | undefined;
    try {
      answer = await runHelper(helper, serverUrl);
    } catch (err) {
      if (err instanceof CredentialHelperMissing) {
        options.logger.warn({ registry, helper }, `credential helper skipped: ${err.message}`);
        return undefined;
      }
      throw new EngineError('REGISTRY_AUTH_FAILED', `credential helper for registry ${registry} (${options.source}) failed: ${(err as Error).message}`);
    }
    if (!answer) return undefined;
    const source = `credential helper docker-credential-${helper} (${options.source})`;
    // The helper protocol's convention: user "<token>" means the secret is an identity token.
    if (answer.username === '<token>') return { username: '<token>', password: '', identityToken: answer.secret, source };
    return { username: answer.username, password: answer.secret, source };
  };

  return {
    description: options.source,
    async credentialsFor(registry: string): Promise<RegistryCredentials | undefined> {
      const data = await load();
      if (!data) return undefined;
      const helper = lookup(data.credHelpers, registry) ?? data.credsStore;
      if (helper !== undefined) {
        const found = await fromHelper(helper, registry);
        if (found) return found;
      }
      const entry = lookup(data.auths, registry);
      if (!entry) return undefined;
      const source = options.source;
      let username = entry.username ?? '';
      let password = entry.password ?? '';
      if (entry.auth !== undefined) {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        username = decoded.slice(0, colon);
        password = decoded.slice(colon + 1);
      }
      if (entry.identitytoken !== undefined) return { username, password, identityToken: entry.identitytoken, source };
      if (username === '' && password === '') return undefined;
      return { username, password, source };
    },
  };
}

/** Asks each provider in turn; the first with credentials for the registry wins. */
export function chainCredentials(providers: CredentialProvider[]): CredentialProvider {
  const descriptions = providers.map((p) => p.description).filter((d): d is string => d !== undefined);
  return {
    ...(descriptions.length === 0 ? {} : { description: descriptions.join(', ') }),
    async credentialsFor(registry: string): Promise<RegistryCredentials | undefined> {
      for (const provider of providers) {
        const found = await provider.credentialsFor(registry);
        if (found) return found;
      }
      return undefined;
    },
  };
}

/** Docker's own rule for where its config lives: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultDockerConfigPath(env: NodeJS.ProcessEnv, home: string): string {
  const dir = env.DOCKER_CONFIG !== undefined && env.DOCKER_CONFIG !== '' ? env.DOCKER_CONFIG : `${home}/.docker`;
  return `${dir.replace(/\/+$/, '')}/config.json`;
}
