import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import {
  ChallengeAuthenticator,
  anonymousCredentials,
  staticCredentials,
  type AuthHttpResponse,
  type CredentialProvider,
  type TokenRequest,
} from '../../src/registry/auth.js';
import { parseWwwAuthenticate } from '../../src/registry/www-authenticate.js';
import { refusal } from './fixtures.js';

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
    requestToken: async (request) => {
      const call = { url: request.url, authorization: request.headers.authorization };
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
    const refused = await refusal(authenticator(() => ({ statusCode: 401, body: Buffer.alloc(0) })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(refused.code).toBe('REGISTRY_AUTH_FAILED');
    expect(refused.message).toMatch(/token service https:\/\/auth.example of registry reg.example refused an anonymous token/);

    const html = await refusal(authenticator(() => ({ statusCode: 200, body: Buffer.from('<html>') })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(html.code).toBe('REGISTRY_ERROR');
    expect(html.message).toMatch(/not JSON/);

    const empty = await refusal(authenticator(() => ok({ nothing: true })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(empty.message).toMatch(/without a token/);

    const down = await refusal(authenticator(() => ({ statusCode: 503, body: Buffer.alloc(0) })).auth.respond(bearer(), 'reg.example', 'a', signal));
    expect(down.code).toBe('REGISTRY_ERROR');
  });

  it('refuses a plain-HTTP token realm on a host that is neither loopback nor insecure', async () => {
    const { auth, calls } = authenticator(() => ok({ token: 'T' }));
    const error = await refusal(auth.respond(parseWwwAuthenticate('Bearer realm="http://evil.example/token"'), 'reg.example', 'a', signal));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(calls).toHaveLength(0);
    await expect(auth.respond(parseWwwAuthenticate('Bearer realm="http://127.0.0.1:1/token"'), 'reg.example', 'a', signal)).resolves.toBe('Bearer T');
  });

  it('Basic: refuses without credentials, answers with them', async () => {
    const basic = parseWwwAuthenticate('Basic realm="test"');
    const none = await refusal(authenticator(() => ok({})).auth.respond(basic, 'reg.example', 'a', signal));
    expect(none.code).toBe('REGISTRY_AUTH_FAILED');
    expect(none.message).toMatch(/registry reg.example requires credentials/);

    const { auth } = authenticator(() => ok({}), { credentials: staticCredentials({ 'reg.example': { username: 'u', password: 'p' } }) });
    expect(await auth.respond(basic, 'reg.example', 'a', signal)).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(auth.authorizationFor('reg.example', 'a')).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it('refuses a 401 without a usable challenge', async () => {
    const error = await refusal(authenticator(() => ok({})).auth.respond([], 'reg.example', 'a', signal));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(/\(none\)/);
  });
});

describe('ChallengeAuthenticator: push, identity tokens and what refusals say', () => {
  function recording(respond: (request: TokenRequest) => AuthHttpResponse, credentials: CredentialProvider = anonymousCredentials) {
    const requests: TokenRequest[] = [];
    const auth = new ChallengeAuthenticator({
      credentials,
      allowsPlainHttp: () => false,
      logger: silentLogger,
      requestToken: async (request) => {
        requests.push(request);
        return respond(request);
      },
    });
    return { auth, requests };
  }

  it('a push asks for pull and push up front, even when challenged for pull only', async () => {
    const { auth, requests } = recording(() => ok({ token: 'P' }));
    await auth.respond(bearer('repository:team/fn:pull'), 'reg.example', 'team/fn', signal, 'push');
    expect(requests[0]?.url.searchParams.getAll('scope')).toEqual(['repository:team/fn:pull,push']);
    // Remembered per access: a pull does not send the push token, and the reverse.
    expect(auth.authorizationFor('reg.example', 'team/fn', 'push')).toBe('Bearer P');
    expect(auth.authorizationFor('reg.example', 'team/fn', 'pull')).toBeUndefined();
  });

  it('trades an identity token with an OAuth2 refresh_token POST, never sending a password', async () => {
    const credentials = staticCredentials({ 'reg.example': { username: '<token>', password: '', identityToken: 'refresh-1' } }, 'helper x');
    const { auth, requests } = recording(() => ok({ access_token: 'A', expires_in: 300 }), credentials);
    expect(await auth.respond(bearer('repository:a:pull'), 'reg.example', 'a', signal)).toBe('Bearer A');
    const [request] = requests;
    expect(request?.method).toBe('POST');
    expect(request?.headers.authorization).toBeUndefined();
    expect(Object.fromEntries(new URLSearchParams(request?.body))).toEqual({
      grant_type: 'refresh_token',
      refresh_token: 'refresh-1',
      client_id: 'wasm-engine',
      service: 'reg.example',
      scope: 'repository:a:pull',
    });
  });

  it('a refusal names the registry, the repository and the credentials tried, never the secret', async () => {
    const credentials = staticCredentials({ 'reg.example': { username: 'alice', password: 'sup3rs3cret' } }, 'Docker config /x/config.json');
    const { auth } = recording(() => ({ statusCode: 401, body: Buffer.from('{"details":"incorrect username or password"}') }), credentials);
    const error = await refusal(auth.respond(bearer('repository:team/fn:pull'), 'reg.example', 'team/fn', signal));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toBe(
      'token service https://auth.example of registry reg.example refused a token for user "alice" from Docker config /x/config.json for repository team/fn (HTTP 401)',
    );
    expect(error.message).not.toContain('sup3rs3cret');
  });

  it('attempted() says what the last answer sent, for the registry\'s own refusals', async () => {
    const credentials = staticCredentials({ 'reg.example': { username: 'bob', password: 'pw' } }, 'engine file');
    const { auth } = recording(() => ok({ token: 'T' }), credentials);
    expect(auth.attempted('reg.example', 'a')).toBe('no credentials');
    await auth.respond(parseWwwAuthenticate('Basic realm="r"'), 'reg.example', 'a', signal);
    expect(auth.attempted('reg.example', 'a')).toBe('user "bob" from engine file');
    await auth.respond(bearer(), 'reg.example', 'b', signal);
    expect(auth.attempted('reg.example', 'b')).toBe('a token for user "bob" from engine file');
    expect(auth.sources).toBe('engine file');
  });

  it('Basic without credentials says where it looked', async () => {
    const { auth } = recording(() => ok({}), staticCredentials({}, 'registry credentials file /etc/we.json, Docker config /h/.docker/config.json'));
    const error = await refusal(auth.respond(parseWwwAuthenticate('Basic realm="r"'), 'reg.example', 'team/fn', signal));
    expect(error.message).toBe(
      'registry reg.example requires credentials (Basic authentication) for repository team/fn and none were found (looked in: registry credentials file /etc/we.json, Docker config /h/.docker/config.json)',
    );
  });
});
