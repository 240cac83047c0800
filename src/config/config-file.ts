/**
 * The configuration file (`--config FILE` or `WASM_ENGINE_CONFIG`): JSON or YAML, one key per
 * setting, read once at start. Precedence: flags, then environment, then the file, then defaults.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { EngineError } from '../errors.js';
import { basicAuthCredentials } from './credentials.js';
import { resolveConfig, type ConfigFileValues, type EngineConfig } from './settings.js';

export const CONFIG_FLAG = 'config';
export const CONFIG_ENV = 'WASM_ENGINE_CONFIG';

/** Reads and parses a configuration file; `setting` names where its path came from, for messages. */
export function readConfigFile(path: string, setting: string): ConfigFileValues {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new EngineError('INVALID_REQUEST', `invalid setting ${setting}=${JSON.stringify(path)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let parsed: unknown;
  try {
    // YAML 1.2 is a superset of JSON: one parser reads both.
    parsed = text.trim() === '' ? {} : parseYaml(text);
  } catch (err) {
    throw new EngineError('INVALID_REQUEST', `invalid setting ${setting}=${JSON.stringify(path)}: not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new EngineError('INVALID_REQUEST', `invalid setting ${setting}=${JSON.stringify(path)}: expected a mapping of setting names to values`);
  }
  return { path, values: parsed as Record<string, unknown> };
}

/**
 * The whole configuration of `serve`: the file named by the `config` flag or WASM_ENGINE_CONFIG,
 * the other flags and the environment, checked, including the Basic auth credentials.
 */
export function loadConfig(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): EngineConfig {
  const { [CONFIG_FLAG]: flagPath, ...rest } = flags;
  const envPath = env[CONFIG_ENV] === '' ? undefined : env[CONFIG_ENV];
  const file =
    flagPath !== undefined
      ? readConfigFile(flagPath, `--${CONFIG_FLAG}`)
      : envPath !== undefined
        ? readConfigFile(envPath, CONFIG_ENV)
        : undefined;
  const config = resolveConfig(rest, env, file);
  basicAuthCredentials(config);
  return config;
}
