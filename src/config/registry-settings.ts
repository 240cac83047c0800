/**
 * Parsers for the registry settings that name files: the engine's own registry credentials file
 * and the Docker config it falls back to. Both use Docker's `config.json` format, so a file made
 * by `docker login` (or copied from a CI secret) works as it is.
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  chainCredentials,
  defaultDockerConfigPath,
  dockerConfigCredentials,
  parseDockerConfig,
  type CredentialProvider,
  type DockerConfigData,
} from '../registry/index.js';

/** The engine's credentials file, read and checked once at start. */
export interface RegistryCredentialsFile {
  file: string;
  data: DockerConfigData;
  /** Keeps the secrets out of anything that serialises the configuration (logs, dumps). */
  toJSON(): string;
}

function invalid(setting: string, raw: string, reason: string): EngineError {
  return new EngineError('INVALID_REQUEST', `invalid setting ${setting}=${JSON.stringify(raw)}: ${reason}`);
}

function readConfigFile(file: string, setting: string, raw: string): DockerConfigData {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw invalid(setting, raw, code === 'ENOENT' ? 'no such file' : `cannot read it (${(err as Error).message})`);
  }
  try {
    return parseDockerConfig(text);
  } catch (err) {
    throw invalid(setting, raw, `expected a Docker config.json-style file, but ${(err as Error).message}`);
  }
}

/** `--registry-credentials FILE`: credentials the engine uses before any Docker config. */
export function parseRegistryCredentials(raw: string, setting: string): RegistryCredentialsFile | null {
  const file = raw.trim();
  if (file === '') return null;
  const data = readConfigFile(file, setting, raw);
  return { file, data, toJSON: () => file };
}

/**
 * `--docker-config PATH`: a `config.json`, or a directory holding one (as `DOCKER_CONFIG` names
 * it); `none` turns Docker credentials off. Checked at start when the file exists, read again at
 * each pull so a later `docker login` takes effect without a restart.
 */
export function parseDockerConfigSetting(raw: string, setting: string): string | null {
  const value = raw.trim();
  if (value === '' || value === 'none') return null;
  let file = value;
  try {
    if (statSync(value).isDirectory()) file = join(value, 'config.json');
  } catch {
    // Docker's own variable may name a directory that `docker login` has yet to fill; ours may not.
    if (setting !== 'DOCKER_CONFIG') throw invalid(setting, raw, 'no such file or directory');
    return join(value, 'config.json');
  }
  try {
    statSync(file);
  } catch {
    return file; // a directory without config.json yet: no credentials until there is one
  }
  readConfigFile(file, setting, raw);
  return file;
}

/** Docker's default: `~/.docker/config.json` (DOCKER_CONFIG is read as the setting's second variable). */
export function defaultDockerConfig(): string | null {
  return defaultDockerConfigPath({}, homedir());
}

/**
 * Where the engine (and `wasm-engine push`) look for registry credentials, in order: the engine's
 * own credentials file, then the Docker config (with its credential helpers).
 */
export function registryCredentialProvider(
  config: { registryCredentials: RegistryCredentialsFile | null; dockerConfig: string | null },
  logger: Logger,
): CredentialProvider {
  const providers: CredentialProvider[] = [];
  if (config.registryCredentials) {
    providers.push(
      dockerConfigCredentials({ data: config.registryCredentials.data, source: `registry credentials file ${config.registryCredentials.file}`, logger }),
    );
  }
  if (config.dockerConfig) providers.push(dockerConfigCredentials({ file: config.dockerConfig, source: `Docker config ${config.dockerConfig}`, logger }));
  return chainCredentials(providers);
}
