#!/usr/bin/env node
// `npm run image`: builds the engine's container image as an OCI image layout in build/image, tagged
// with package.json's version, without a Docker daemon and without a base image. The files come
// from scripts/image-rootfs.sh (the Dockerfile's build stage runs the same script); this packs
// them as three layers with GNU tar and sets the image config with umoci. Reproducible: every
// file's mtime and the image's dates are the last commit's time (or SOURCE_DATE_EPOCH), owners
// are numeric, entries sorted, so the same checkout gives the same digests.
// Usage: node scripts/build-image.mjs [--out DIR]   (default build/image). Needs dist/ built.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const layout = resolve(outIndex >= 0 ? args[outIndex + 1] : join(repo, 'build', 'image'));

/** The image's configuration; test/image/dockerfile.test.ts checks the Dockerfile says the same. */
const IMAGE_UID = 10001;
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const tag = pkg.version;

function run(cmd, cmdArgs, options = {}) {
  const result = spawnSync(cmd, cmdArgs, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...options });
  if (result.error) throw new Error(`${cmd}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${cmd} ${cmdArgs.join(' ')} exited ${result.status}`);
  return (result.stdout ?? '').trim();
}

function git(gitArgs) {
  const result = spawnSync('git', gitArgs, { cwd: repo, encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : '';
}

const revision = git(['rev-parse', 'HEAD']) || 'unknown';
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? (git(['log', '-1', '--format=%ct']) || 0));
const created = new Date(epoch * 1000).toISOString().replace('.000Z', 'Z');

const config = {
  user: `${IMAGE_UID}:${IMAGE_UID}`,
  entrypoint: ['/usr/local/bin/node', '/app/bin/wasm-engine.js', 'serve'],
  env: [
    'PATH=/usr/local/bin',
    'WASM_ENGINE_HOST=0.0.0.0',
    'WASM_ENGINE_DATA_DIR=/data',
    // Node trusts its own copy of Mozilla's roots; this adds the image's Debian bundle, so that an
    // operator's bundle mounted over /etc/ssl/certs/ca-certificates.crt is trusted too.
    'NODE_USE_SYSTEM_CA=1',
  ],
  exposedPorts: ['10000/tcp'],
  volumes: ['/data'],
  workingDir: '/app',
  labels: {
    'org.opencontainers.image.title': 'wasm-engine',
    'org.opencontainers.image.description': pkg.description,
    'org.opencontainers.image.licenses': pkg.license,
    'org.opencontainers.image.version': pkg.version,
    'org.opencontainers.image.revision': revision,
  },
};

const work = join(dirname(layout), `${layout.split('/').pop()}-work`);
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const rootfs = join(work, 'rootfs');
run('bash', [join(repo, 'scripts', 'image-rootfs.sh'), rootfs], { stdio: ['ignore', 'inherit', 'inherit'] });

const tarCommon = [
  '--format=posix',
  '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
  '--sort=name',
  `--mtime=@${epoch}`,
  '--numeric-owner',
];
const layers = ['runtime', 'dependencies', 'engine'].map((name) => {
  const dir = join(rootfs, name);
  const file = join(work, `${name}.tar`);
  // Names without a leading ./, as Docker writes them; the runtime layer ends with the volume's
  // directory, the image user's.
  run('tar', ['--create', `--file=${file}`, `--directory=${dir}`, ...tarCommon, '--owner=0', '--group=0', ...readdirSync(dir).sort()]);
  if (name === 'runtime') {
    const volume = join(rootfs, 'volume');
    run('tar', ['--append', `--file=${file}`, `--directory=${volume}`, ...tarCommon, `--owner=${IMAGE_UID}`, `--group=${IMAGE_UID}`, ...readdirSync(volume).sort()]);
  }
  return { name, file, bytes: statSync(file).size };
});

rmSync(layout, { recursive: true, force: true });
mkdirSync(dirname(layout), { recursive: true });
const image = `${layout}:${tag}`;
run('umoci', ['init', '--layout', layout]);
run('umoci', ['new', '--image', image]);
for (const layer of layers) {
  run('umoci', ['raw', 'add-layer', '--image', image, '--history.created', created,
    '--history.created_by', `scripts/image-rootfs.sh: ${layer.name}`, layer.file]);
}
run('umoci', [
  'config', '--image', image, '--no-history', '--created', created, '--os', 'linux', '--architecture', 'amd64',
  '--config.user', config.user,
  ...config.entrypoint.flatMap((a) => ['--config.entrypoint', a]),
  '--clear=config.cmd',
  ...config.env.flatMap((e) => ['--config.env', e]),
  ...config.exposedPorts.flatMap((p) => ['--config.exposedports', p]),
  ...config.volumes.flatMap((v) => ['--config.volume', v]),
  '--config.workingdir', config.workingDir,
  ...Object.entries(config.labels).flatMap(([k, v]) => ['--config.label', `${k}=${v}`]),
  ...Object.entries(config.labels).flatMap(([k, v]) => ['--manifest.annotation', `${k}=${v}`]),
]);
run('umoci', ['gc', '--layout', layout]);
rmSync(work, { recursive: true, force: true });

// Sizes: the compressed layers as a registry stores them, and the files as unpacked.
const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
const blob = (digest) => join(layout, 'blobs', ...digest.split(':'));
const manifestDigest = index.manifests[0].digest;
const manifest = JSON.parse(readFileSync(blob(manifestDigest), 'utf8'));
const compressed = manifest.layers.reduce((sum, l) => sum + l.size, 0);
const unpacked = layers.reduce((sum, l) => sum + l.bytes, 0);
const MB = (n) => `${(n / 1e6).toFixed(1)} MB`;
const summary = {
  image: `wasm-engine:${tag}`,
  layout,
  manifest: manifestDigest,
  revision,
  created,
  compressedBytes: compressed,
  unpackedBytes: unpacked,
  layers: layers.map((l, i) => ({ name: l.name, compressedBytes: manifest.layers[i].size, unpackedBytes: l.bytes })),
};
writeFileSync(join(dirname(layout), `${layout.split('/').pop()}.json`), `${JSON.stringify(summary, null, 2)}\n`);
process.stdout.write(
  `image wasm-engine:${tag} in ${layout} (oci layout, tag ${tag})\n` +
    `  manifest ${manifestDigest}\n` +
    layers.map((l, i) => `  layer ${l.name}: ${MB(manifest.layers[i].size)} compressed, ${MB(l.bytes)} as tar\n`).join('') +
    `  total: ${MB(compressed)} compressed, ${MB(unpacked)} unpacked\n`,
);
