import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import {
  ChallengeAuthenticator,
  anonymousCredentials,
  staticCredentials,
  type AuthHttpResponse,
  type CredentialProvider,
} from '../../src/registry/auth.js';
import { parseWwwAuthenticate } from '../../src/registry/www-authenticate.js';

describe('parseWwwAuthenticate', () => {
  it('parses Docker Hub\'s Bearer challenge with a comma inside the quoted scope', () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"';
    expect(parseWwwAuthenticate(header)).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' },
      },
    ]);
  });

  it('handles escapes, spaces around =, token values and case-insensitive names', () => {
    const [challenge] = parseWwwAuthenticate('BEARER Realm = "http://x/t\\"q\\\\" , Service=reg ,error="insufficient_scope"');
    expect(challenge).toEqual({ scheme: 'bearer', params: { realm: 'http://x/t"q\\', service: 'reg', error: 'insufficient_scope' } });
  });

  it('splits several challenges in one header and across header lines', () => {
    const challenges = parseWwwAuthenticate(['Basic realm="Registry Realm", Bearer realm="https://a/token",service="s"', 'Negotiate abc+/==']);
    expect(challenges.map((c) => c.scheme)).toEqual(['basic', 'bearer', 'negotiate']);
    expect(challenges[0]?.params).toEqual({ realm: 'Registry Realm' });
    expect(challenges[1]?.params).toEqual({ realm: 'https://a/token', service: 's' });
    expect(challenges[2]?.token68).toBe('abc+/==');
  });

  it('survives junk and empty input', () => {
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate('Basic realm="unterminated')).toEqual([{ scheme: 'basic', params: { realm: 'unterminated' } }]);
  });
});

interface TokenCall {
  url: URL;
  authorization: string | undefined;
}

function authenticator(
  respond: (call: TokenCall) => AuthHttpResponse,
  options: { credentials?: CredentialProvider; now?: () => number } = {},
) {
  const calls: TokenCall[] = [];
  const auth = new ChallengeAuthenticator({
    credentials: options.credentials ?? anonymousCredentials,
    allowsPlainHttp: (host) => host.startsWith('127.0.0.1'),
    logger: silentLogger,
    ...(options.now ? { now: options.now } : {}),
    requestToken: async (url, authorization) => {
      const call = { url, authorization };
      calls.push(call);
      return respond(call);
    },
  });
  return { auth, calls };
}

const ok = (body: object): AuthHttpResponse => ({ statusCode: 200, body: Buffer.from(JSON.stringify(body)) });
const signal = new AbortController().signal;
const bearer = (scope?: string) =>
  parseWwwAuthenticate(`Bearer realm="https://auth.example/token",service="reg.example"${scope ? `,scope="${scope}"` : ''}`);

async function authError(promise: Promise<unknown>): Promise<EngineError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error('expected a refusal');
}

describe('ChallengeAuthenticator', () => {
  it('fetches an anonymous token with service and scope, and remembers it for the repository', async () => {
    const { auth, calls } = authenticator(() => ok({ token: 'T1', expires_in: 300 }));
    expect(auth.authorizationFor('reg.example', 'lib/app')).toBeUndefined();
    const value = await auth.respond(bearer('repository:lib/app:pull'), 'reg.example', 'lib/app', signal);
    expect(value).toBe('Bearer T1');
    expect(calls).toHaveLength(1);
    expect(calls[0]?.authorization).toBeUndefined();
    expect(calls[0]?.url.searchParams.get('service')).toBe('reg.example');
    expect(calls[0]?.url.searchParams.getAll('scope')).toEqual(['repository:lib/app:pull']);
    expect(auth.authorizationFor('reg.example', 'lib/app')).toBe('Bearer T1');
    expect(auth.authorizationFor('reg.example', 'lib/other')).toBeUndefined();
  });

  it('asks for pull on the repository when the challenge has no scope; accepts access_token', async () => {
    const { auth, calls } = authenticator(() => ok({ access_token: 'A' }));
    expect(await auth.respond(bearer(), 'reg.example', 'x/y', signal)).toBe('Bearer A');
    expect(calls[0]?.url.searchParams.get('scope')).toBe('repository:x/y:pull');
  });

  it('reuses a cached token until it expires (60 s floor), then fetches a new one', async () => {
    let now = 1_000_000;
    let n = 0;
    const { auth, calls } = authenticator(() => ok({ token: `T${++n}`, expires_in: 5 }), { now: () => now });
    expect(await auth.respond(bearer('s'), 'reg.example', 'a', signal)).toBe('Bearer T1');
    expect(await auth.respond(bearer('s'), 'reg.example', 'a', signal)).toBe('Bearer T1');
    now += 30_000; // expires_in 5 counts as 60 s
    expect(auth.authorizationFor('reg.example', 'a')).toBe('Bearer T1');
    now += 30_000;
    expect(auth.authorizationFor('reg.example', 'a')).toBeUndefined();
    expect(await auth.respond(bearer('s'), 'reg.example', 'a', signal)).toBe('Bearer T2');
    expect(calls).toHaveLength(2);
  });

  it('forget drops a refused token', async () => {
    const { auth, calls } = authenticator(() => ok({ token: 'T' }));
    await auth.respond(bearer('s'), 'reg.example', 'a', signal);
    auth.forget('reg.example', 'a');
    expect(auth.authorizationFor('reg.example', 'a')).toBeUndefined();
    await auth.respond(bearer('s'), 'reg.example', 'a', signal);
    expect(calls).toHaveLength(2);
  });

  it('sends configured credentials to the token service as Basic', async () => {
    const { auth, calls } = authenticator(() => ok({ token: 'T' }), { credentials: staticCredentials({ 'reg.example': { username: 'u', password: 'p' } }) });
    await auth.respond(bearer('s'), 'reg.example', 'a', signal);
    expect(calls[0]?.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it('a token service refusing is REGISTRY_AUTH_FAILED; a broken one is REGISTRY_ERROR', async () => {
    const refused = await authError(authenticator(() => ({ statusCode: 401, body: Buffer.alloc(0) })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(refused.code).toBe('REGISTRY_AUTH_FAILED');
    expect(refused.message).toMatch(/token service https:\/\/auth.example of registry reg.example refused an anonymous token/);

    const html = await authError(authenticator(() => ({ statusCode: 200, body: Buffer.from('<html>') })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(html.code).toBe('REGISTRY_ERROR');
    expect(html.message).toMatch(/not JSON/);

    const empty = await authError(authenticator(() => ok({ nothing: true })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(empty.message).toMatch(/without a token/);

    const down = await authError(authenticator(() => ({ statusCode: 503, body: Buffer.alloc(0) })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(down.code).toBe('REGISTRY_ERROR');
  });

  it('refuses a plain-HTTP token realm on a host that is neither loopback nor insecure', async () => {
    const { auth, calls } = authenticator(() => ok({ token: 'T' }));
    const error = await authError(auth.respond(parseWwwAuthenticate('Bearer realm="http://evil.example/token"'), 'reg.example', 'a', signal));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(calls).toHaveLength(0);
    await expect(auth.respond(parseWwwAuthenticate('Bearer realm="http://127.0.0.1:1/token"'), 'reg.example', 'a', signal)).resolves.toBe('Bearer T');
  });

  it('Basic: refuses without credentials, answers with them', async () => {
    const basic = parseWwwAuthenticate('Basic realm="test"');
    const none = await authError(authenticator(() => ok({})).auth.respond(basic, 'reg.example', 'a', signal));
    expect(none.code).toBe('REGISTRY_AUTH_FAILED');
    expect(none.message).toMatch(/registry reg.example requires credentials/);

    const { auth } = authenticator(() => ok({}), { credentials: staticCredentials({ 'reg.example': { username: 'u', password: 'p' } }) });
    expect(await auth.respond(basic, 'reg.example', 'a', signal)).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(auth.authorizationFor('reg.example', 'a')).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it('refuses a 401 without a usable challenge', async () => {
    const error = await authError(authenticator(() => ok({})).auth.respond([], 'reg.example', 'a', signal));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(/\(none\)/);
  });
});
