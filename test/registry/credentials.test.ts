/**
 * Credential sources as docker and skopeo read them: Docker's config.json (`auths` with `auth`,
 * `username`/`password`, `identitytoken`), credential helpers run as real executables from PATH
 * (a script written by the test), `credsStore`, the engine's own table, and the chain of them.
 */
import { chmod, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger, type Logger } from '../../src/logger.js';
import { describeCredentials, staticCredentials } from '../../src/registry/auth.js';
import {
  chainCredentials,
  defaultDockerConfigPath,
  dockerConfigCredentials,
  parseDockerConfig,
} from '../../src/registry/credentials.js';

let dir: string;
let savedPath: string | undefined;
const b64 = (text: string): string => Buffer.from(text).toString('base64');

/**
 * A credential helper speaking the real protocol: reads the server URL on stdin, answers JSON for
 * the servers it knows, "credentials not found" (exit 1) for the others, and logs each call.
 */
const HELPER = `#!/bin/sh
read server
echo "$server" >> "$(dirname "$0")/calls.log"
case "$server" in
  127.0.0.1:5000) echo '{"ServerURL":"127.0.0.1:5000","Username":"helper-user","Secret":"helper-secret"}' ;;
  tokens.example) echo '{"ServerURL":"tokens.example","Username":"<token>","Secret":"refresh-me"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubber","Secret":"hub-secret"}' ;;
  broken.example) echo 'keychain locked' >&2; exit 2 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'wasm-engine-creds-'));
  const helper = path.join(dir, 'docker-credential-wetest');
  await writeFile(helper, HELPER);
  await chmod(helper, 0o755);
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${process.env.PATH ?? ''}`;
});

afterAll(async () => {
  process.env.PATH = savedPath;
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, content: object): Promise<string> {
  const file = path.join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify(content));
  return file;
}

function warnings(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (_o, msg) => lines.push(msg ?? ''), child: () => logger };
  return { logger, lines };
}

describe('parseDockerConfig', () => {
  it('reads auths, credHelpers and credsStore, ignoring other fields', () => {
    const data = parseDockerConfig(
      JSON.stringify({
        auths: { 'reg.example': { auth: b64('u:p:with:colons') }, other: { username: 'a', password: 'b', email: 'x@y' } },
        credHelpers: { 'gcr.io': 'gcloud' },
        credsStore: 'desktop',
        psFormat: 'table',
      }),
    );
    expect(data).toEqual({
      auths: { 'reg.example': { auth: b64('u:p:with:colons') }, other: { username: 'a', password: 'b' } },
      credHelpers: { 'gcr.io': 'gcloud' },
      credsStore: 'desktop',
    });
  });

  it.each([
    ['{', /not valid JSON/],
    ['[]', /not a JSON object/],
    ['{"auths": []}', /"auths" is not an object/],
    ['{"auths": {"r": {"auth": 5}}}', /auths\["r"\].auth is not a string/],
    [`{"auths": {"r": {"auth": "${b64('nocolon')}"}}}`, /not base64 of "user:password"/],
    ['{"credHelpers": {"r": "../../bin/sh"}}', /not a credential helper name/],
    ['{"credsStore": "a b"}', /"credsStore" is not a credential helper name/],
  ])('refuses %s', (text, message) => {
    expect(() => parseDockerConfig(text)).toThrow(message);
  });
});

describe('dockerConfigCredentials', () => {
  it('decodes auths[host].auth, names the source, and matches keys written as URLs', async () => {
    const file = await configFile('auths', {
      auths: { 'http://127.0.0.1:5001/v2/': { auth: b64('alice:s3cret') }, 'reg.example': { username: 'bob', password: 'pw' } },
    });
    const provider = dockerConfigCredentials({ file, source: `Docker config ${file}`, logger: silentLogger });
    expect(await provider.credentialsFor('127.0.0.1:5001')).toEqual({ username: 'alice', password: 's3cret', source: `Docker config ${file}` });
    expect(await provider.credentialsFor('reg.example')).toMatchObject({ username: 'bob', password: 'pw' });
    expect(await provider.credentialsFor('unknown.example')).toBeUndefined();
    expect(provider.description).toBe(`Docker config ${file}`);
  });

  it('finds Docker Hub under its historical key https://index.docker.io/v1/', async () => {
    const file = await configFile('hub', { auths: { 'https://index.docker.io/v1/': { auth: b64('hubuser:hubpass') } } });
    const provider = dockerConfigCredentials({ file, source: 'x', logger: silentLogger });
    expect(await provider.credentialsFor('docker.io')).toMatchObject({ username: 'hubuser', password: 'hubpass' });
  });

  it('takes an identitytoken as a refresh token', async () => {
    const file = await configFile('identity', { auths: { 'reg.example': { auth: b64('u:'), identitytoken: 'refresh' } } });
    const provider = dockerConfigCredentials({ file, source: 'x', logger: silentLogger });
    expect(await provider.credentialsFor('reg.example')).toMatchObject({ identityToken: 'refresh', username: 'u' });
  });

  it('a missing file means no credentials; a file written later is read at once', async () => {
    const file = path.join(dir, 'later.json');
    const provider = dockerConfigCredentials({ file, source: 'x', logger: silentLogger });
    expect(await provider.credentialsFor('reg.example')).toBeUndefined();
    await writeFile(file, JSON.stringify({ auths: { 'reg.example': { auth: b64('a:1') } } }));
    expect(await provider.credentialsFor('reg.example')).toMatchObject({ password: '1' });
    // `docker login` rewrites the file: the change is seen without a restart.
    await writeFile(file, JSON.stringify({ auths: { 'reg.example': { auth: b64('a:22') } } }));
    await utimes(file, new Date(), new Date(Date.now() + 5_000));
    expect(await provider.credentialsFor('reg.example')).toMatchObject({ password: '22' });
  });

  it('a damaged file is REGISTRY_AUTH_FAILED naming the source, never its content', async () => {
    const file = path.join(dir, 'damaged.json');
    await writeFile(file, '{"auths": {"r": {"password": "topsecret"');
    const provider = dockerConfigCredentials({ file, source: `Docker config ${file}`, logger: silentLogger });
    const error = await provider.credentialsFor('r').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('REGISTRY_AUTH_FAILED');
    expect((error as EngineError).message).toContain(`cannot use Docker config ${file}`);
    expect((error as EngineError).message).not.toContain('topsecret');
  });

  it('runs credHelpers[host] from PATH with the protocol, before auths', async () => {
    const file = await configFile('helpers', {
      credHelpers: { '127.0.0.1:5000': 'wetest', 'tokens.example': 'wetest' },
      auths: { '127.0.0.1:5000': { auth: b64('file-user:file-pass') } },
    });
    const provider = dockerConfigCredentials({ file, source: `Docker config ${file}`, logger: silentLogger });
    const found = await provider.credentialsFor('127.0.0.1:5000');
    expect(found).toEqual({ username: 'helper-user', password: 'helper-secret', source: `credential helper docker-credential-wetest (Docker config ${file})` });
    expect(describeCredentials(found!)).toBe(`user "helper-user" from credential helper docker-credential-wetest (Docker config ${file})`);
    // The protocol's "<token>" user: the secret is an identity token.
    expect(await provider.credentialsFor('tokens.example')).toMatchObject({ identityToken: 'refresh-me', password: '' });
  });

  it('credsStore serves every registry; "not found" falls back to auths', async () => {
    const file = await configFile('store', { credsStore: 'wetest', auths: { 'fallback.example': { auth: b64('fb:pw') } } });
    const provider = dockerConfigCredentials({ file, source: 'x', logger: silentLogger });
    expect(await provider.credentialsFor('docker.io')).toMatchObject({ username: 'hubber', password: 'hub-secret' });
    expect(await provider.credentialsFor('fallback.example')).toMatchObject({ username: 'fb', password: 'pw' });
    expect(await provider.credentialsFor('nothing.example')).toBeUndefined();
  });

  it('a helper that is not installed is skipped with a warning', async () => {
    const file = await configFile('missing-helper', { credHelpers: { 'reg.example': 'not-installed' }, auths: { 'reg.example': { auth: b64('u:p') } } });
    const { logger, lines } = warnings();
    const provider = dockerConfigCredentials({ file, source: 'x', logger });
    expect(await provider.credentialsFor('reg.example')).toMatchObject({ username: 'u' });
    expect(lines.join('\n')).toMatch(/docker-credential-not-installed is not on PATH/);
  });

  it('a helper failing otherwise is REGISTRY_AUTH_FAILED with its first line', async () => {
    const file = await configFile('broken-helper', { credHelpers: { 'broken.example': 'wetest' } });
    const provider = dockerConfigCredentials({ file, source: 'x', logger: silentLogger });
    const error = (await provider.credentialsFor('broken.example').catch((e: unknown) => e)) as EngineError;
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(/credential helper for registry broken.example \(x\) failed: docker-credential-wetest exited with 2: keychain locked/);
  });

  it('a parsed configuration (the engine\'s credentials file) works the same', async () => {
    const provider = dockerConfigCredentials({ data: parseDockerConfig(JSON.stringify({ auths: { r: { auth: b64('e:f') } } })), source: 'engine file', logger: silentLogger });
    expect(await provider.credentialsFor('r')).toEqual({ username: 'e', password: 'f', source: 'engine file' });
  });
});

describe('chainCredentials and defaults', () => {
  it('asks each source in order and describes them all', async () => {
    const chain = chainCredentials([
      staticCredentials({ a: { username: 'first', password: '1' } }, 'engine credentials'),
      staticCredentials({ a: { username: 'second', password: '2' }, b: { username: 'only', password: '3' } }, 'Docker config'),
    ]);
    expect(await chain.credentialsFor('a')).toMatchObject({ username: 'first', source: 'engine credentials' });
    expect(await chain.credentialsFor('b')).toMatchObject({ username: 'only', source: 'Docker config' });
    expect(await chain.credentialsFor('c')).toBeUndefined();
    expect(chain.description).toBe('engine credentials, Docker config');
    expect(chainCredentials([]).description).toBeUndefined();
  });

  it('finds Docker\'s config where docker does', () => {
    expect(defaultDockerConfigPath({}, '/home/u')).toBe('/home/u/.docker/config.json');
    expect(defaultDockerConfigPath({ DOCKER_CONFIG: '/etc/ci/' }, '/home/u')).toBe('/etc/ci/config.json');
  });

  it('describes what was tried without the secret', () => {
    expect(describeCredentials({ username: 'u', password: 'p', source: 's' })).toBe('user "u" from s');
    expect(describeCredentials({ username: '<token>', password: '', identityToken: 't' })).toBe('an identity token');
  });
});
