/**
 * What a real registry cannot be made to do, played by a small loopback HTTP server: wrong bytes,
 * lying headers, non-JSON errors, a Bearer token service, blob redirects, hangs and cut connections.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { createImageFetcher, type ClosableImageFetcher, type ImageFetcherOptions } from '../../src/registry/index.js';
import { cleanupAfterEach, type Handler, type Served } from './fake-server.js';
import { ADD_WAT, OCI_MANIFEST, buildWasm, refusal, sameBytes, sha256, wasmManifest } from './fixtures.js';

const { defer, serve } = cleanupAfterEach();

function fetcherFor(options: Partial<ImageFetcherOptions> = {}): ClosableImageFetcher {
  const fetcher = createImageFetcher({ logger: silentLogger, ...options });
  defer(() => fetcher.close());
  return fetcher;
}

let module: Buffer;
let manifest: Buffer;

beforeAll(async () => {
  module = (await buildWasm('fake-registry-add', ADD_WAT)).bytes;
  manifest = wasmManifest(module);
});

interface Behaviour {
  manifest?: Handler;
  blob?: Handler;
  /** Runs first; return true when it answered. */
  gate?: (req: IncomingMessage, res: ServerResponse, url: URL) => boolean;
}

/** A registry serving one image, `fn:v1`, whose parts can be replaced per test. */
function registryHandler(behaviour: Behaviour = {}): Handler {
  return (req, res, url) => {
    if (behaviour.gate?.(req, res, url)) return;
    if (url.pathname === '/v2/fn/manifests/v1' || url.pathname === `/v2/fn/manifests/${sha256(manifest)}`) {
      if (behaviour.manifest) return behaviour.manifest(req, res, url);
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': sha256(manifest) });
      res.end(manifest);
      return;
    }
    if (url.pathname === `/v2/fn/blobs/${sha256(module)}`) {
      if (behaviour.blob) return behaviour.blob(req, res, url);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(module);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('404 page not found\n');
  };
}

describe('against a misbehaving registry', () => {
  it('pulls from the well-behaved fake, asking for all four manifest types', async () => {
    const registry = await serve(registryHandler());
    const fetched = await fetcherFor().fetch(`${registry.host}/fn:v1`);
    expect(sameBytes(fetched.bytes, module)).toBe(true);
    expect(fetched.manifestDigest).toBe(sha256(manifest));
    const accept = String(registry.requests[0]?.headers.accept);
    for (const type of [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json']) {
      expect(accept).toContain(type);
    }
  });

  it('a Docker-Content-Digest that does not match the bytes → REGISTRY_ERROR', async () => {
    const registry = await serve(
      registryHandler({
        manifest: (_req, res) => {
          res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': sha256(Buffer.from('other')) });
          res.end(manifest);
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/does not match its Docker-Content-Digest/);
  });

  it('manifest bytes that do not match the pinned digest → REGISTRY_ERROR', async () => {
    const pinned = sha256(manifest);
    const registry = await serve(
      registryHandler({
        manifest: (_req, res) => {
          res.writeHead(200, { 'content-type': OCI_MANIFEST });
          res.end(Buffer.concat([manifest, Buffer.from(' ')]));
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn@${pinned}`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/does not match the pinned digest/);
  });

  it('blob bytes that do not match their digest → REGISTRY_ERROR', async () => {
    const registry = await serve(
      registryHandler({
        blob: (_req, res) => {
          const wrong = Buffer.from(module);
          wrong[wrong.length - 1] ^= 0xff;
          res.writeHead(200);
          res.end(wrong);
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(new RegExp(`registry ${registry.host}: blob of .* does not match its digest`));
  });

  it('a blob cut short by a dropped connection → REGISTRY_ERROR', async () => {
    const registry = await serve(
      registryHandler({
        blob: (_req, res) => {
          res.writeHead(200, { 'content-length': String(module.length) });
          res.write(module.subarray(0, 10));
          setTimeout(() => res.destroy(), 20);
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toContain(`registry ${registry.host}`);
  });

  it('a plain-text 404 → IMAGE_NOT_FOUND carrying the text', async () => {
    const registry = await serve(registryHandler());
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:missing`));
    expect(error.code).toBe('IMAGE_NOT_FOUND');
    expect(error.message).toMatch(/fn:missing not found .*\(HTTP 404: 404 page not found\)/);
  });

  it('a 500 with an HTML body → REGISTRY_ERROR with the status', async () => {
    const registry = await serve((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/html' });
      res.end('<html><body>Internal error</body></html>');
    });
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/answered HTTP 500: <html><body>Internal error/);
  });

  it('a 200 whose body is not a manifest → REGISTRY_ERROR', async () => {
    const registry = await serve(
      registryHandler({
        manifest: (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html>login page</html>');
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/malformed manifest .*not JSON/);
  });

  it('a manifest whose mediaType contradicts its Content-Type → REGISTRY_ERROR', async () => {
    const registry = await serve(
      registryHandler({
        manifest: (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.list.v2+json' });
          res.end(manifest);
        },
      }),
    );
    expect((await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`))).message).toMatch(/does not match the announced type/);
  });

  it('a manifest larger than 4 MiB is refused without buffering it all', async () => {
    const registry = await serve(
      registryHandler({
        manifest: (_req, res) => {
          res.writeHead(200, { 'content-type': OCI_MANIFEST });
          res.end(Buffer.alloc(5 * 1024 * 1024, 0x20));
        },
      }),
    );
    expect((await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`))).message).toMatch(/manifest larger than 4194304 bytes/);
  });

  it('429 → REGISTRY_ERROR saying it is rate-limited; 403 → REGISTRY_AUTH_FAILED', async () => {
    const limited = await serve((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down', detail: null }] }));
    });
    const error = await refusal(fetcherFor().fetch(`${limited.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/rate-limiting/);

    const denied = await serve((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'denied', detail: ['x'] }] }));
    });
    expect((await refusal(fetcherFor().fetch(`${denied.host}/fn:v1`))).code).toBe('REGISTRY_AUTH_FAILED');
  });

  it('a registry that never answers → REGISTRY_ERROR after the total timeout', async () => {
    const registry = await serve(() => {
      /* never answers */
    });
    const started = Date.now();
    const error = await refusal(fetcherFor({ timeoutMs: 300 }).fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/took longer than 300 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a caller abort cancels the pull', async () => {
    const registry = await serve(() => {
      /* never answers */
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`, { signal: controller.signal }));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/was cancelled/);
  });

  it('works on a port fetch() refuses as "bad" (10080)', async () => {
    let registry: Served;
    try {
      registry = await serve(registryHandler(), 10080);
    } catch {
      return; // port taken on this machine: nothing to show
    }
    expect(sameBytes((await fetcherFor().fetch(`${registry.host}/fn:v1`)).bytes, module)).toBe(true);
  });
});

describe('Bearer token auth (anonymous)', () => {
  function tokenProtected(behaviour: Behaviour & { token?: Handler } = {}) {
    let tokenHost = '';
    const inner = registryHandler(behaviour);
    const handler: Handler = (req, res, url) => {
      if (url.pathname === '/token') {
        if (behaviour.token) return behaviour.token(req, res, url);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token: 'good-token', expires_in: 300 }));
        return;
      }
      if (req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="http://${tokenHost}/token",service="fake.registry",scope="repository:fn:pull"`,
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: [{ Type: 'repository', Name: 'fn', Action: 'pull' }] }] }));
        return;
      }
      inner(req, res, url);
    };
    return {
      handler,
      setHost: (host: string) => {
        tokenHost = host;
      },
    };
  }

  it('gets an anonymous token and reuses it for later requests and pulls', async () => {
    const fake = tokenProtected();
    const registry = await serve(fake.handler);
    fake.setHost(registry.host);
    const fetcher = fetcherFor();
    expect(sameBytes((await fetcher.fetch(`${registry.host}/fn:v1`)).bytes, module)).toBe(true);
    expect(sameBytes((await fetcher.fetch(`${registry.host}/fn:v1`)).bytes, module)).toBe(true);
    const tokenRequests = registry.requests.filter((r) => r.path === '/token');
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0]?.headers.authorization).toBeUndefined();
    // One 401 in all: after it, the token goes up front.
    expect(registry.requests.filter((r) => r.path.startsWith('/v2/') && r.headers.authorization === undefined)).toHaveLength(1);
  });

  it('a token service refusing → REGISTRY_AUTH_FAILED', async () => {
    const fake = tokenProtected({
      token: (_req, res) => {
        res.writeHead(401);
        res.end();
      },
    });
    const registry = await serve(fake.handler);
    fake.setHost(registry.host);
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(/token service .* refused an anonymous token/);
  });

  it('a registry refusing the token it asked for → REGISTRY_AUTH_FAILED', async () => {
    const fake = tokenProtected({
      token: (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token: 'useless' }));
      },
    });
    const registry = await serve(fake.handler);
    fake.setHost(registry.host);
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(/refused access to repository fn \(HTTP 401: UNAUTHORIZED authentication required\)/);
  });
});

describe('blob redirects', () => {
  it('follows a cross-origin 307 without sending the registry credentials along', async () => {
    const cdn = await serve((_req, res) => {
      res.writeHead(200);
      res.end(module);
    });
    const fake = {
      tokenHost: '',
    };
    const registry = await serve((req, res, url) => {
      if (url.pathname === '/token') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token: 'good-token' }));
        return;
      }
      if (req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${fake.tokenHost}/token",service="s"` });
        res.end();
        return;
      }
      registryHandler({
        blob: (_r, response) => {
          response.writeHead(307, { location: `http://${cdn.host}/storage/blob?sig=abc` });
          response.end();
        },
      })(req, res, url);
    });
    fake.tokenHost = registry.host;
    const fetched = await fetcherFor().fetch(`${registry.host}/fn:v1`);
    expect(sameBytes(fetched.bytes, module)).toBe(true);
    expect(cdn.requests).toHaveLength(1);
    expect(cdn.requests[0]?.path).toBe('/storage/blob');
    expect(cdn.requests[0]?.headers.authorization).toBeUndefined();
  });

  it('keeps credentials on a same-origin relative redirect', async () => {
    const registry = await serve((req, res, url) => {
      if (url.pathname === '/storage/blob') {
        if (req.headers.authorization !== 'Basic dTpw') {
          res.writeHead(401);
          res.end();
          return;
        }
        res.writeHead(200);
        res.end(module);
        return;
      }
      if (req.headers.authorization !== 'Basic dTpw') {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' });
        res.end();
        return;
      }
      registryHandler({
        blob: (_r, response) => {
          response.writeHead(302, { location: '/storage/blob' });
          response.end();
        },
      })(req, res, url);
    });
    const { staticCredentials } = await import('../../src/registry/index.js');
    const fetcher = fetcherFor({ credentials: staticCredentials({ [registry.host]: { username: 'u', password: 'p' } }) });
    expect(sameBytes((await fetcher.fetch(`${registry.host}/fn:v1`)).bytes, module)).toBe(true);
  });

  it('a redirect loop → REGISTRY_ERROR', async () => {
    const registry = await serve(
      registryHandler({
        blob: (_req, res, url) => {
          res.writeHead(307, { location: url.pathname });
          res.end();
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/redirected more than 5 times/);
  });

  it('a redirect to plain HTTP on a non-loopback host is refused', async () => {
    const registry = await serve(
      registryHandler({
        blob: (_req, res) => {
          res.writeHead(307, { location: 'http://cdn.example.com/blob' });
          res.end();
        },
      }),
    );
    const error = await refusal(fetcherFor().fetch(`${registry.host}/fn:v1`));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/redirected to http:\/\/cdn.example.com, which is neither HTTPS/);
  });
});
