/**
 * Basic auth credentials, as OpenFaaS takes them: from the settings, or from a secrets directory
 * holding the files `basic-auth-user` and `basic-auth-password` (how Kubernetes mounts a secret).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError } from '../errors.js';
import type { EngineConfig } from './settings.js';

export interface BasicCredentials {
  user: string;
  password: string;
}

type AuthSettings = Pick<EngineConfig, 'basicAuthUser' | 'basicAuthPassword' | 'secretMountPath' | 'authInvoke'>;

/** The credentials in force, or undefined when Basic auth is off. Throws naming the bad setting. */
export function basicAuthCredentials(config: AuthSettings): BasicCredentials | undefined {
  if (config.secretMountPath !== '') {
    if (config.basicAuthUser !== '' || config.basicAuthPassword !== '') {
      throw new EngineError('INVALID_REQUEST', 'invalid setting --secret-mount-path: give it or --basic-auth-user/--basic-auth-password, not both');
    }
    const read = (file: string): string => {
      const path = join(config.secretMountPath, file);
      let value: string;
      try {
        value = readFileSync(path, 'utf8').trim();
      } catch (err) {
        throw new EngineError(
          'INVALID_REQUEST',
          `invalid setting --secret-mount-path=${JSON.stringify(config.secretMountPath)}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
      if (value === '') throw new EngineError('INVALID_REQUEST', `invalid setting --secret-mount-path: ${path} is empty`);
      return value;
    };
    return { user: read('basic-auth-user'), password: read('basic-auth-password') };
  }
  if (config.basicAuthUser === '' && config.basicAuthPassword === '') {
    if (config.authInvoke) throw new EngineError('INVALID_REQUEST', 'invalid setting --auth-invoke: no credentials are configured');
    return undefined;
  }
  if (config.basicAuthUser === '') throw new EngineError('INVALID_REQUEST', 'invalid setting --basic-auth-user: required with --basic-auth-password');
  if (config.basicAuthPassword === '') throw new EngineError('INVALID_REQUEST', 'invalid setting --basic-auth-password: required with --basic-auth-user');
  if (config.basicAuthUser.includes(':')) throw new EngineError('INVALID_REQUEST', 'invalid setting --basic-auth-user: it may not contain ":"');
  return { user: config.basicAuthUser, password: config.basicAuthPassword };
}
