/**
 * Building images in memory and pushing them to a REAL registry (Debian's docker-registry 2.8):
 * anonymous, htpasswd Basic auth, and token auth with the test's own token issuer; read back by
 * our pull, by `skopeo inspect` and `skopeo copy`; and OCI layouts written by pack, read by skopeo.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import {
  buildImage,
  createImageFetcher,
  createImagePusher,
  imageFileName,
  staticCredentials,
  writeOciLayout,
  type CredentialProvider,
  type ImagePusherOptions,
  type TransferProgress,
} from '../../src/registry/index.js';
import { getManifest, startRegistry, startTokenServer, type RunningRegistry, type TokenServer } from '../support/registry.js';
import { bodyOf, cleanupAfterEach, type Served } from './fake-server.js';
import { ADD_WAT, COMPONENT_BYTES, SUB_WAT, buildWasm, refusal, sameBytes } from './fixtures.js';

const run = promisify(execFile);
const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

let work: string;
let add: Buffer;
let sub: Buffer;
let plain: RunningRegistry;

const { defer, serve } = cleanupAfterEach();

function pusher(options: Partial<ImagePusherOptions> = {}) {
  const p = createImagePusher({ logger: silentLogger, retryBaseDelayMs: 10, ...options });
  defer(() => p.close());
  return p;
}

function fetcher(credentials?: CredentialProvider) {
  const f = createImageFetcher({ logger: silentLogger, ...(credentials ? { credentials } : {}) });
  defer(() => f.close());
  return f;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'wasm-engine-push-'));
  [add, sub, plain] = await Promise.all([
    buildWasm('push-add', ADD_WAT).then((m) => m.bytes),
    buildWasm('push-sub', SUB_WAT).then((m) => m.bytes),
    startRegistry(),
  ]);
}, 60_000);

afterAll(async () => {
  await plain?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('buildImage', () => {
  it('docker: one tar+gzip layer with the file at /, a wasi/wasm config, a Docker v2 schema 2 manifest', () => {
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const manifest = JSON.parse(image.manifest.bytes.toString());
    expect(manifest).toMatchObject({
      schemaVersion: 2,
      mediaType: DOCKER_V2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: image.config.digest, size: image.config.size },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: image.layers[0]!.digest, size: image.layers[0]!.size }],
    });
    const tar = gunzipSync(image.layers[0]!.bytes);
    const config = JSON.parse(image.config.bytes.toString());
    expect(config).toMatchObject({ os: 'wasi', architecture: 'wasm', config: { Entrypoint: ['/add.wasm'] }, rootfs: { type: 'layers' } });
    expect(config.rootfs.diff_ids).toEqual([`sha256:${createHash('sha256').update(tar).digest('hex')}`]);
    // ustar: "./" then "add.wasm" with the module as its content.
    expect(tar.subarray(0, 2).toString()).toBe('./');
    expect(tar.subarray(512, 520).toString()).toBe('add.wasm');
    expect(sameBytes(tar.subarray(1024, 1024 + add.length), add)).toBe(true);
  });

  it('is reproducible: the same file gives the same digests', () => {
    const a = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const b = buildImage(Buffer.from(add), { format: 'docker', fileName: 'add.wasm' });
    expect(b.manifest.digest).toBe(a.manifest.digest);
    expect(buildImage(add, { format: 'wasm', fileName: 'add.wasm' }).manifest.digest).toBe(buildImage(add, { format: 'wasm', fileName: 'add.wasm' }).manifest.digest);
  });

  it('wasm: the CNCF TAG Runtime artifact, the module itself as one application/wasm layer', () => {
    const image = buildImage(add, { format: 'wasm', fileName: 'add.wasm' });
    const manifest = JSON.parse(image.manifest.bytes.toString());
    expect(manifest.mediaType).toBe(OCI_MANIFEST);
    expect(manifest.config.mediaType).toBe('application/vnd.wasm.config.v0+json');
    expect(manifest.layers).toEqual([
      { mediaType: 'application/wasm', digest: image.layers[0]!.digest, size: add.length, annotations: { 'org.opencontainers.image.title': 'add.wasm' } },
    ]);
    expect(sameBytes(image.layers[0]!.bytes, add)).toBe(true);
    expect(JSON.parse(image.config.bytes.toString())).toMatchObject({ architecture: 'wasm', os: 'wasip1', layerDigests: [image.layers[0]!.digest] });
  });

  it('refuses what is not valid WebAssembly, and components', () => {
    const invalid = Buffer.concat([add.subarray(0, 8), Buffer.from([0x01, 0xff, 0xff])]);
    for (const [bytes, message] of [
      [Buffer.from('#!/bin/sh\n'), /not a WebAssembly module/],
      [invalid, /not valid WebAssembly \(WebAssembly.validate refused it\)/],
      [COMPONENT_BYTES, /components are not supported yet/],
    ] as const) {
      let error: unknown;
      try {
        buildImage(bytes, { format: 'docker', fileName: 'x.wasm' });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(EngineError);
      expect((error as EngineError).message).toMatch(message);
    }
  });

  it('names the file inside the image after the file, ending in .wasm', () => {
    expect(imageFileName('/a/b/hello.wasm')).toBe('hello.wasm');
    expect(imageFileName('build/fn')).toBe('fn.wasm');
  });
});

describe('push to a real registry (no auth)', () => {
  it('pushes a docker-format image that our pull reads back, with the pushed manifest digest', async () => {
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const events: TransferProgress[] = [];
    const result = await pusher({ onProgress: (e) => events.push(e) }).push(image, `${plain.host}/pushed/add:v1`);
    expect(result).toMatchObject({ digest: image.manifest.digest, uploaded: 2, skipped: 0, pinned: `${plain.host}/pushed/add:v1@${image.manifest.digest}` });
    expect(events.filter((e) => e.phase === 'done')).toHaveLength(2);

    const stored = await getManifest(plain.host, 'pushed/add', 'v1');
    expect(stored.mediaType).toBe(DOCKER_V2);
    expect(sameBytes(stored.bytes, image.manifest.bytes)).toBe(true);
    const fetched = await fetcher().fetch(`${plain.host}/pushed/add:v1`);
    expect(sameBytes(fetched.bytes, add)).toBe(true);
    expect(fetched.fileName).toBe('/add.wasm');
    expect(fetched.manifestDigest).toBe(result.digest);

    // HEAD first: a second push uploads nothing.
    const again = await pusher().push(image, `${plain.host}/pushed/add:v2`);
    expect(again).toMatchObject({ uploaded: 0, skipped: 2, digest: result.digest });
  });

  it('pushes a wasm-format artifact that our pull reads back', async () => {
    const image = buildImage(sub, { format: 'wasm', fileName: 'sub.wasm' });
    const result = await pusher().push(image, `${plain.host}/pushed/sub:wasm`);
    const fetched = await fetcher().fetch(`${plain.host}/pushed/sub:wasm@${result.digest}`);
    expect(sameBytes(fetched.bytes, sub)).toBe(true);
    expect(fetched.fileName).toBe('sub.wasm');
  });

  it('skopeo inspect and skopeo copy read what push wrote', async () => {
    const docker = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const wasm = buildImage(add, { format: 'wasm', fileName: 'add.wasm' });
    await pusher().push(docker, `${plain.host}/skopeo/add:docker`);
    await pusher().push(wasm, `${plain.host}/skopeo/add:wasm`);

    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${plain.host}/skopeo/add:docker`]);
    expect(JSON.parse(stdout)).toMatchObject({ Digest: docker.manifest.digest, Os: 'wasi', Architecture: 'wasm', Layers: [docker.layers[0]!.digest] });
    // skopeo 1.9's plain inspect refuses any non-image config ("artifact"); --raw and --config read it.
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${plain.host}/skopeo/add:wasm`]);
    expect(raw.stdout).toBe(wasm.manifest.bytes.toString());
    const config = await run('skopeo', ['inspect', '--config', '--raw', '--tls-verify=false', `docker://${plain.host}/skopeo/add:wasm`]);
    expect(JSON.parse(config.stdout)).toMatchObject({ os: 'wasip1', architecture: 'wasm' });

    for (const tag of ['docker', 'wasm']) {
      const dir = path.join(work, `skopeo-copy-${tag}`);
      await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${plain.host}/skopeo/add:${tag}`, `oci:${dir}:copied`]);
      expect(sameBytes((await fetcher().fetch(`oci:${dir}:copied`)).bytes, add)).toBe(true);
    }
  });

  it('refuses references it cannot push to', async () => {
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    expect((await refusal(pusher().push(image, `${plain.host}/x@sha256:${'a'.repeat(64)}`))).message).toMatch(/a push names a tag/);
    expect((await refusal(pusher().push(image, 'oci:/tmp/x'))).message).toMatch(/use pack for an OCI layout/);
    expect((await refusal(pusher().push(image, `${plain.host}/Upper:v1`))).code).toBe('INVALID_REQUEST');
  });
});

describe('push with htpasswd Basic auth', () => {
  const creds = { user: 'alice', pass: 's3cret' };
  let secured: RunningRegistry;
  beforeAll(async () => {
    secured = await startRegistry({ htpasswd: creds });
  }, 60_000);
  afterAll(async () => {
    await secured?.stop();
  });

  it('pushes with credentials and pulls back with them', async () => {
    const credentials = staticCredentials({ [secured.host]: { username: creds.user, password: creds.pass } }, 'test credentials');
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const result = await pusher({ credentials }).push(image, `${secured.host}/team/add:v1`);
    expect(sameBytes((await fetcher(credentials).fetch(`${secured.host}/team/add:v1@${result.digest}`)).bytes, add)).toBe(true);
  });

  it('a wrong password is refused naming the registry, repository, user and source, never the password', async () => {
    const credentials = staticCredentials({ [secured.host]: { username: 'alice', password: 'WrongPassw0rd' } }, 'Docker config /tmp/config.json');
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const error = await refusal(pusher({ credentials }).push(image, `${secured.host}/team/add:v1`));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toContain(`registry ${secured.host} refused access to repository team/add`);
    expect(error.message).toContain('with user "alice" from Docker config /tmp/config.json');
    expect(error.message).not.toContain('WrongPassw0rd');
  });

  it('missing credentials are refused saying so', async () => {
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    const error = await refusal(pusher().push(image, `${secured.host}/team/add:v1`));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toBe(`registry ${secured.host} requires credentials (Basic authentication) for repository team/add and none are configured`);
  });
});

describe('push and pull with token auth (the test\'s own token issuer)', () => {
  const users = { user: 'bob', pass: 'hunter2' };
  let tokens: TokenServer;
  let registry: RunningRegistry;
  beforeAll(async () => {
    tokens = await startTokenServer({ users, refreshToken: 'identity-123' });
    registry = await startRegistry({ token: tokens.auth });
  }, 60_000);
  afterAll(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  it('asks the token service for pull,push with the credentials, once for the whole push', async () => {
    const credentials = staticCredentials({ [registry.host]: { username: users.user, password: users.pass } });
    const before = tokens.requests.length;
    const image = buildImage(add, { format: 'wasm', fileName: 'add.wasm' });
    await pusher({ credentials }).push(image, `${registry.host}/team/fn:v1`);
    const asked = tokens.requests.slice(before);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ scopes: ['repository:team/fn:pull,push'], authorization: `Basic ${Buffer.from('bob:hunter2').toString('base64')}` });
    expect(sameBytes((await fetcher(credentials).fetch(`${registry.host}/team/fn:v1`)).bytes, add)).toBe(true);
  });

  it('anonymous push is refused by the token service, naming what was tried', async () => {
    const error = await refusal(pusher().push(buildImage(add, { format: 'wasm', fileName: 'add.wasm' }), `${registry.host}/team/fn:v2`));
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(new RegExp(`token service http://127.0.0.1:\\d+ of registry ${registry.host} refused an anonymous token for repository team/fn \\(HTTP 401\\)`));
  });

  it('trades an identity token (OAuth2 refresh_token grant) for access tokens', async () => {
    const credentials = staticCredentials({ [registry.host]: { username: '<token>', password: '', identityToken: 'identity-123' } });
    const before = tokens.requests.length;
    await pusher({ credentials }).push(buildImage(sub, { format: 'docker', fileName: 'sub.wasm' }), `${registry.host}/team/sub:v1`);
    expect(sameBytes((await fetcher(credentials).fetch(`${registry.host}/team/sub:v1`)).bytes, sub)).toBe(true);
    const asked = tokens.requests.slice(before);
    expect(asked.every((r) => r.method === 'POST' && r.grant === 'refresh_token' && r.authorization === undefined)).toBe(true);

    const wrong = staticCredentials({ [registry.host]: { username: '<token>', password: '', identityToken: 'stale' } });
    expect((await refusal(fetcher(wrong).fetch(`${registry.host}/team/sub:v1`))).message).toMatch(/refused a token for an identity token/);
  });

  it('a cached token the registry finds expired is replaced by a fresh one, and the pull succeeds', async () => {
    const credentials = staticCredentials({ [registry.host]: { username: users.user, password: users.pass } });
    await pusher({ credentials }).push(buildImage(add, { format: 'docker', fileName: 'add.wasm' }), `${registry.host}/team/exp:v1`);
    const pull = fetcher(credentials);
    // The issuer lies: expires_in says an hour, the JWT dies (the registry allows 60 s of clock skew) in 3 s.
    tokens.setTiming({ expSeconds: -57, expiresIn: 3600 });
    const before = tokens.requests.length;
    expect(sameBytes((await pull.fetch(`${registry.host}/team/exp:v1`)).bytes, add)).toBe(true);
    tokens.setTiming({ expSeconds: 300, expiresIn: 300 });
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    expect(sameBytes((await pull.fetch(`${registry.host}/team/exp:v1`)).bytes, add)).toBe(true);
    // One token for the first pull, one more after the registry refused the expired one.
    expect(tokens.requests.length - before).toBe(2);
  }, 30_000);
});

describe('pack: OCI image layouts', () => {
  it('writes a layout that skopeo, umoci and our oci: pull read, keeping other tags', async () => {
    const dir = path.join(work, 'packed');
    const docker = buildImage(add, { format: 'docker', fileName: 'add.wasm', mediaTypes: 'oci' });
    const wasm = buildImage(sub, { format: 'wasm', fileName: 'sub.wasm' });
    await writeOciLayout(docker, dir, 'v1');
    await writeOciLayout(wasm, dir, 'wasm');
    const { stdout } = await run('skopeo', ['inspect', `oci:${dir}:v1`]);
    expect(JSON.parse(stdout)).toMatchObject({ Digest: docker.manifest.digest, Os: 'wasi', Architecture: 'wasm' });
    const stat = await run('umoci', ['stat', '--image', `${dir}:v1`]);
    expect(stat.stdout).toMatch(/ADD add\.wasm/);
    expect(sameBytes((await fetcher().fetch(`oci:${dir}:v1`)).bytes, add)).toBe(true);
    expect(sameBytes((await fetcher().fetch(`oci:${dir}:wasm`)).bytes, sub)).toBe(true);

    // Packing the tag again replaces only that entry.
    await writeOciLayout(buildImage(sub, { format: 'docker', fileName: 'sub.wasm', mediaTypes: 'oci' }), dir, 'v1');
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    expect(index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name']).sort()).toEqual(['v1', 'wasm']);
    expect(sameBytes((await fetcher().fetch(`oci:${dir}:v1`)).bytes, sub)).toBe(true);

    // skopeo copies the packed image to a registry, and it deploys from there.
    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${dir}:wasm`, `docker://${plain.host}/packed:wasm`]);
    expect(sameBytes((await fetcher().fetch(`${plain.host}/packed:wasm`)).bytes, sub)).toBe(true);
  });

  it('refuses a directory that holds something other than a layout', async () => {
    const dir = path.join(work, 'not-a-layout');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'notes.txt'), 'mine');
    const error = await refusal(writeOciLayout(buildImage(add, { format: 'wasm', fileName: 'add.wasm' }), dir, 'v1'));
    expect(error.message).toMatch(/not empty and is not an OCI layout/);
  });
});

describe('push retries', () => {
  it('starts an upload again after a 503 on POST and a 500 on PUT', async () => {
    const stored = new Map<string, Buffer>();
    let posts = 0;
    let puts = 0;
    let registry: Served | undefined;
    registry = await serve((req, res, url) => {
      void (async () => {
        const blob = /^\/v2\/fn\/blobs\/(sha256:[0-9a-f]+)$/.exec(url.pathname);
        if (req.method === 'HEAD' && blob) {
          res.writeHead(stored.has(blob[1]!) ? 200 : 404).end();
          return;
        }
        if (req.method === 'POST' && url.pathname === '/v2/fn/blobs/uploads/') {
          posts += 1;
          if (posts === 1) {
            res.writeHead(503).end();
            return;
          }
          res.writeHead(202, { location: `http://${registry!.host}/v2/fn/blobs/uploads/u${posts}?_state=x` }).end();
          return;
        }
        if (req.method === 'PUT' && url.pathname.startsWith('/v2/fn/blobs/uploads/')) {
          puts += 1;
          const body = await bodyOf(req);
          if (puts === 1) {
            res.writeHead(500).end();
            return;
          }
          expect(url.searchParams.get('_state')).toBe('x');
          stored.set(url.searchParams.get('digest')!, body);
          res.writeHead(201).end();
          return;
        }
        if (req.method === 'PUT' && url.pathname === '/v2/fn/manifests/v1') {
          await bodyOf(req);
          res.writeHead(201).end();
          return;
        }
        res.writeHead(404).end();
      })();
    });
    const image = buildImage(add, { format: 'docker', fileName: 'add.wasm' });
    await pusher().push(image, `${registry.host}/fn:v1`);
    expect(sameBytes(stored.get(image.layers[0]!.digest)!, image.layers[0]!.bytes)).toBe(true);
    expect(stored.has(image.config.digest)).toBe(true);
    expect(posts).toBe(4); // 503, layer, layer again after the 500, config
  });
});
