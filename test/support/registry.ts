/**
 * Test helpers around a REAL registry: Debian's `docker-registry` (distribution 2.8) on a free
 * loopback port with its own temporary storage, skopeo to push OCI layouts to it, the repo's
 * make-oci-layout.sh to build them, and raw blob/manifest uploads for images no tool makes.
 * Only ever talks to 127.0.0.1.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { X509Certificate, createHash, createPrivateKey, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { freePort } from './free-port.js';

const run = promisify(execFile);

export interface RegistryAuth {
  user: string;
  pass: string;
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, ready to prefix a repository. */
  host: string;
  port: number;
  stop(): Promise<void>;
  /** SIGKILL, as a crash: connections drop mid-answer. stop() still cleans up afterwards. */
  kill(): Promise<void>;
}

/** Children still running, killed if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});


/** Token auth settings for the registry config (see startTokenServer). */
export interface RegistryTokenAuth {
  realm: string;
  service: string;
  issuer: string;
  /** Absolute path of the PEM certificate the registry trusts for token signatures. */
  rootCertBundle: string;
}

export interface StartRegistryOptions {
  htpasswd?: RegistryAuth;
  token?: RegistryTokenAuth;
}

function configYaml(dir: string, port: number, htpasswdFile: string | undefined, token: RegistryTokenAuth | undefined): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (htpasswdFile) lines.push('auth:', '  htpasswd:', '    realm: test', `    path: ${htpasswdFile}`);
  if (token) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${token.realm}`,
      `    service: ${token.service}`,
      `    issuer: ${token.issuer}`,
      `    rootcertbundle: ${token.rootCertBundle}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    if (!(await waitExit(child, 5_000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5_000);
    }
  }
  live.delete(child);
}

/** Resolves once `/v2/` answers (200, or 401 with auth on); rejects if the child dies first. */
async function waitReady(child: ChildProcess, port: number, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}): ${output()}`);
    }
    try {
      const response = await request(`http://127.0.0.1:${port}/v2/`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      await response.body.dump();
      if (response.statusCode === 200 || response.statusCode === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`docker-registry did not answer on port ${port} within 15 s: ${output()}`);
}

async function startOnce(opts: StartRegistryOptions): Promise<RunningRegistry> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'wasm-engine-registry-'));
  try {
    let htpasswdFile: string | undefined;
    if (opts.htpasswd) {
      const { stdout } = await run('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.pass]);
      htpasswdFile = path.join(dir, 'htpasswd');
      await writeFile(htpasswdFile, stdout);
    }
    const port = await freePort();
    const config = path.join(dir, 'config.yml');
    await writeFile(config, configYaml(dir, port, htpasswdFile, opts.token));
    const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-8_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('exit', () => live.delete(child));
    try {
      await waitReady(child, port, () => output);
    } catch (err) {
      await killChild(child);
      throw err;
    }
    let stopped: Promise<void> | undefined;
    return {
      host: `127.0.0.1:${port}`,
      port,
      kill: async () => {
        child.kill('SIGKILL');
        await waitExit(child, 5_000);
      },
      stop: () => {
        stopped ??= (async () => {
          await killChild(child);
          await rm(dir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Starts `docker-registry serve` on a free loopback port with fresh storage; with `htpasswd`, it
 * requires those Basic credentials; with `token`, Bearer tokens from that token service (see
 * startTokenServer). Retries on another port if the chosen one was taken meanwhile.
 */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RunningRegistry> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      return await startOnce(opts);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

const MAKE_LAYOUT = fileURLToPath(new URL('../../scripts/make-oci-layout.sh', import.meta.url));

/** Packs `wasmPath` as a wasi/wasm image (one tar+gzip layer) in the OCI layout `layoutDir` under `tag`. */
export async function makeLayout(wasmPath: string, layoutDir: string, tag: string): Promise<void> {
  await run('bash', [MAKE_LAYOUT, wasmPath, layoutDir, tag]);
}

/** Pushes `oci:layoutDir:tag` to `docker://dest` (e.g. `127.0.0.1:5000/hello:v1`) with skopeo. */
export async function pushLayout(
  layoutDir: string,
  tag: string,
  dest: string,
  format: 'v2s2' | 'oci',
  opts: { creds?: RegistryAuth } = {},
): Promise<void> {
  const args = ['--insecure-policy', 'copy', '--quiet', '--format', format, '--dest-tls-verify=false'];
  if (opts.creds) args.push('--dest-creds', `${opts.creds.user}:${opts.creds.pass}`);
  args.push(`oci:${layoutDir}:${tag}`, `docker://${dest}`);
  await run('skopeo', args);
}

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function authHeaders(auth: RegistryAuth | undefined): Record<string, string> {
  return auth ? { authorization: `Basic ${Buffer.from(`${auth.user}:${auth.pass}`).toString('base64')}` } : {};
}

/** Uploads a blob (monolithic upload: POST then PUT with the digest); returns its digest. */
export async function uploadBlob(host: string, repository: string, bytes: Uint8Array, auth?: RegistryAuth): Promise<string> {
  const digest = sha256(bytes);
  const start = await request(`http://${host}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers: authHeaders(auth) });
  await start.body.dump();
  const location = start.headers.location;
  if (start.statusCode !== 202 || typeof location !== 'string') {
    throw new Error(`upload start for ${repository} answered ${start.statusCode}`);
  }
  const url = new URL(location, `http://${host}/`);
  url.searchParams.set('digest', digest);
  const put = await request(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', ...authHeaders(auth) },
    body: Buffer.from(bytes),
  });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`blob upload for ${repository} answered ${put.statusCode}: ${text}`);
  return digest;
}

/** PUTs manifest bytes (exactly as given) under `reference` (a tag or digest); returns their digest. */
export async function uploadManifest(
  host: string,
  repository: string,
  reference: string,
  manifest: Uint8Array | object,
  mediaType: string,
  auth?: RegistryAuth,
): Promise<string> {
  const bytes = manifest instanceof Uint8Array ? Buffer.from(manifest) : Buffer.from(JSON.stringify(manifest));
  const put = await request(`http://${host}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType, ...authHeaders(auth) },
    body: bytes,
  });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`manifest upload for ${repository}:${reference} answered ${put.statusCode}: ${text}`);
  return sha256(bytes);
}

/** The OCI empty descriptor's blob: `{}`. */
export const EMPTY_CONFIG = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
} as const;

const ALL_MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** GETs a manifest as stored (all four types accepted); returns its bytes, digest and media type. */
export async function getManifest(
  host: string,
  repository: string,
  reference: string,
  auth?: RegistryAuth,
): Promise<{ bytes: Buffer; digest: string; mediaType: string }> {
  const response = await request(`http://${host}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: ALL_MANIFEST_TYPES, ...authHeaders(auth) },
  });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  if (response.statusCode !== 200) throw new Error(`manifest ${repository}:${reference} answered ${response.statusCode}`);
  const mediaType = String(response.headers['content-type'] ?? '');
  return { bytes, digest: sha256(bytes), mediaType };
}

export interface TokenTiming {
  /** The JWT's `exp`, in seconds from now (default 300). */
  expSeconds: number;
  /** The `expires_in` the answer claims (default 300): a lie here makes a client keep a dead token. */
  expiresIn: number;
}

export interface TokenServer {
  /** Settings to pass as `startRegistry({ token })`. */
  auth: RegistryTokenAuth;
  /** Every token request received: its query and Authorization header (GET) or grant (POST). */
  requests: Array<{ service: string | null; scopes: string[]; authorization: string | undefined; method?: string; grant?: string }>;
  /** Changes the lifetime of the tokens issued from now on. */
  setTiming(timing: Partial<TokenTiming>): void;
  stop(): Promise<void>;
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function issueToken(key: KeyObject, certDer: Buffer, auth: RegistryTokenAuth, scopes: string[], expSeconds: number): string {
  const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
  const now = Math.floor(Date.now() / 1000);
  const access = scopes.flatMap((scope) => {
    const match = /^repository:(.+):([a-z,*]+)$/.exec(scope);
    return match ? [{ type: 'repository', name: match[1], actions: (match[2] ?? '').split(',') }] : [];
  });
  const claims = { iss: auth.issuer, sub: '', aud: auth.service, exp: now + expSeconds, nbf: now - 120, iat: now - 120, jti: randomUUID(), access };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${base64url(signature)}`;
}

/**
 * A Docker token service on loopback (the distribution token protocol): issues ES256 JWTs granting
 * whatever scope is asked, anonymously, or only to `users` (Basic) when given; with `refreshToken`,
 * also to an OAuth2 `refresh_token` POST carrying that token (Docker's identity tokens).
 */
export async function startTokenServer(opts: { users?: RegistryAuth; refreshToken?: string } = {}): Promise<TokenServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'wasm-engine-token-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=wasm-engine-test-token',
  ]);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const requests: TokenServer['requests'] = [];
  const expected = opts.users ? `Basic ${Buffer.from(`${opts.users.user}:${opts.users.pass}`).toString('base64')}` : undefined;
  let auth: RegistryTokenAuth | undefined;
  const timing: TokenTiming = { expSeconds: 300, expiresIn: 300 };
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const headers: IncomingHttpHeaders = req.headers;
    if (req.method === 'POST') {
      let body = '';
      req.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      req.on('end', () => {
        const form = new URLSearchParams(body);
        requests.push({ service: form.get('service'), scopes: (form.get('scope') ?? '').split(' ').filter(Boolean), authorization: headers.authorization, method: 'POST', grant: form.get('grant_type') ?? undefined });
        if (url.pathname !== '/token' || !auth || opts.refreshToken === undefined || form.get('grant_type') !== 'refresh_token' || form.get('refresh_token') !== opts.refreshToken) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"invalid refresh token"}');
          return;
        }
        const token = issueToken(key, certDer, auth, (form.get('scope') ?? '').split(' ').filter(Boolean), timing.expSeconds);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: token, expires_in: timing.expiresIn }));
      });
      return;
    }
    requests.push({ service: url.searchParams.get('service'), scopes: url.searchParams.getAll('scope'), authorization: headers.authorization });
    if (url.pathname !== '/token' || !auth) {
      res.writeHead(404).end();
      return;
    }
    if (expected !== undefined && headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
      return;
    }
    const token = issueToken(key, certDer, auth, url.searchParams.getAll('scope'), timing.expSeconds);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: timing.expiresIn, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  auth = { realm: `http://127.0.0.1:${port}/token`, service: 'wasm-engine-test', issuer: 'wasm-engine-test-issuer', rootCertBundle: certFile };
  return {
    auth,
    requests,
    setTiming: (next) => Object.assign(timing, next),
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface SlowProxy {
  /** `127.0.0.1:PORT`: a loopback registry host, so plain HTTP. */
  host: string;
  /** Bytes passed from the registry to clients so far. */
  forwarded(): number;
  stop(): Promise<void>;
}

/**
 * A TCP proxy in front of a registry that passes answers on at `bytesPerSecond`, so a test can act
 * (kill the registry) while a download is under way. When either side closes, so does the other.
 */
export async function startSlowProxy(targetPort: number, bytesPerSecond: number): Promise<SlowProxy> {
  let forwarded = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const queue: Buffer[] = [];
    let queued = 0;
    const tick = setInterval(() => {
      let budget = Math.ceil(bytesPerSecond / 20);
      while (budget > 0 && queue.length > 0) {
        const head = queue[0]!;
        const piece = head.subarray(0, budget);
        if (piece.length === head.length) queue.shift();
        else queue[0] = head.subarray(piece.length);
        budget -= piece.length;
        queued -= piece.length;
        forwarded += piece.length;
        client.write(piece);
      }
      if (queued < 64 * 1024) upstream.resume();
    }, 50);
    const close = (): void => {
      clearInterval(tick);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      queued += chunk.length;
      // Back-pressure: the registry is really still sending while the client is being fed.
      if (queued >= 64 * 1024) upstream.pause();
    });
    // A registry that dies (or closes) mid-answer: the client's connection drops at once, as the
    // registry's own would have.
    upstream.on('error', close);
    upstream.on('close', close);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    client.on('error', close);
    client.on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    forwarded: () => forwarded,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
