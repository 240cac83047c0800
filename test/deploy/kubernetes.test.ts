/**
 * The Kubernetes manifests under deploy/kubernetes: every kustomization renders, every object and
 * every field passes the Kubernetes API schemas (kubernetes-models, unknown fields refused), the
 * settings they give are the engine's, the engine started with their config file answers their
 * probes on their port, and the pod and drain settings are what the README promises.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { CONFIG_ENV } from '../../src/config/config-file.js';
import { SETTINGS } from '../../src/config/settings.js';
import { CLI, REPO_ROOT, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { cFixture } from '../support/fixtures.js';
import { call } from '../support/http.js';
import { renderKustomization, type KubeObject } from './support/kustomize.js';
import { validateObject } from './support/validate-object.js';
import { eventually } from '../support/eventually.js';

const DEPLOY = join(REPO_ROOT, 'deploy', 'kubernetes');
const ENGINE_CONTAINER = 'wasm-engine';
const ENGINE_UID = 10001;

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are free-form YAML read field by field */
type Obj = any;

function kustomizationDirs(dir: string): string[] {
  const out = existsSync(join(dir, 'kustomization.yaml')) ? [dir] : [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...kustomizationDirs(path));
  }
  return out;
}

const DIRS = kustomizationDirs(DEPLOY);
const rendered = new Map<string, KubeObject[]>(DIRS.map((dir) => [relative(DEPLOY, dir), renderKustomization(dir)]));
const objectsOf = (name: string): Obj[] => {
  const objects = rendered.get(name);
  if (!objects) throw new Error(`no kustomization ${name}`);
  return objects;
};
const find = (objects: Obj[], kind: string, name: string): Obj | undefined => objects.find((o) => o.kind === kind && o.metadata.name === name);
const engineDeployment = (objects: Obj[]): Obj => {
  const deployment = find(objects, 'Deployment', 'wasm-engine');
  if (!deployment) throw new Error('no Deployment wasm-engine');
  return deployment;
};
const engineContainer = (objects: Obj[]): Obj => engineDeployment(objects).spec.template.spec.containers.find((c: Obj) => c.name === ENGINE_CONTAINER);
const volumeOf = (deployment: Obj, name: string): Obj => deployment.spec.template.spec.volumes.find((v: Obj) => v.name === name);
const mountAt = (container: Obj, path: string): Obj => container.volumeMounts.find((m: Obj) => m.mountPath === path);

/** The engine's settings file as the pod reads it: the ConfigMap mounted at WASM_ENGINE_CONFIG's directory. */
function engineConfigFile(objects: Obj[]): { path: string; text: string; values: Record<string, unknown> } {
  const deployment = engineDeployment(objects);
  const container = engineContainer(objects);
  const path = container.env.find((e: Obj) => e.name === CONFIG_ENV)?.value as string;
  const mount = container.volumeMounts.find((m: Obj) => path.startsWith(`${m.mountPath}/`));
  const configMapName = volumeOf(deployment, mount.name).configMap.name;
  const text = find(objects, 'ConfigMap', configMapName).data[path.slice(mount.mountPath.length + 1)] as string;
  return { path, text, values: parseYaml(text) as Record<string, unknown> };
}

/** Settings the engine knows: the table in src/config/settings.ts, the config file's variable, and the pending list. */
function knownSettings(): { flags: Set<string>; envs: Set<string> } {
  const flags = new Set<string>();
  const envs = new Set<string>([CONFIG_ENV]);
  for (const setting of Object.values(SETTINGS)) {
    flags.add(setting.flag);
    flags.add(setting.key);
    for (const env of setting.env) envs.add(env);
  }
  const pending = join(REPO_ROOT, 'test', 'deploy', 'pending-settings.txt');
  if (existsSync(pending)) {
    for (const line of readFileSync(pending, 'utf8').split('\n')) {
      if (line.trim() === '' || line.startsWith('#')) continue;
      const [flag, env] = line.trim().split(/\s+/);
      flags.add(flag!);
      envs.add(env!);
    }
  }
  return { flags, envs };
}

/** The names in the engine container's environment and config file that are no setting of the engine. */
function unknownSettings(objects: Obj[]): string[] {
  const known = knownSettings();
  const container = engineContainer(objects);
  const envNames = [...(container.env ?? []).map((e: Obj) => e.name as string)];
  const unknown = envNames.filter((name) => !known.envs.has(name)).map((name) => `env ${name}`);
  if ((container.envFrom ?? []).length > 0) unknown.push('envFrom (names not checkable)');
  for (const key of Object.keys(engineConfigFile(objects).values)) {
    if (!known.flags.has(key)) unknown.push(`config file key ${key}`);
  }
  return unknown;
}

/** Secrets made by the README's `kubectl [-n NS] create secret generic NAME --from-literal=KEY=…` lines. */
function readmeSecrets(): Obj[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').replace(/\\\n\s*/g, ' ');
  const secrets: Obj[] = [];
  for (const match of readme.matchAll(/^kubectl (?:-n (\S+) )?create secret generic (\S+)((?: --from-literal=[^\s=]+=\S+)+)/gm)) {
    const keys = [...match[3]!.matchAll(/--from-literal=([^\s=]+)=/g)].map((m) => m[1]!);
    secrets.push({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: match[2], ...(match[1] ? { namespace: match[1] } : {}) },
      stringData: Object.fromEntries(keys.map((k) => [k, 'x'])),
    });
  }
  return secrets;
}

function kubectlKustomizeVersion(): number | undefined {
  try {
    const out = JSON.parse(execFileSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { kustomizeVersion?: string };
    const major = /^v(\d+)\./.exec(out.kustomizeVersion ?? '');
    return major ? Number(major[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Objects compared regardless of the order of list items with a name (kustomize reorders merged items). */
function normalized(value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = value.map(normalized);
    if (items.every((i) => typeof i === 'object' && i !== null && typeof (i as Obj).name === 'string')) {
      items.sort((a, b) => ((a as Obj).name < (b as Obj).name ? -1 : 1));
    }
    return items;
  }
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, normalized((value as Obj)[k])]));
  }
  return value;
}

describe('deploy/kubernetes renders', () => {
  it('finds the base and both overlays', () => {
    expect([...rendered.keys()].sort()).toEqual(['base', 'overlays/file-store', 'overlays/openfaas']);
  });

  for (const dir of DIRS) {
    const name = relative(DEPLOY, dir);
    it(`${name}: every object and every field passes the Kubernetes API schemas`, async () => {
      const objects = objectsOf(name);
      expect(objects.length).toBeGreaterThan(0);
      for (const object of objects) await validateObject(object);
    });
  }

  const kustomizeMajor = kubectlKustomizeVersion();
  it.skipIf(kustomizeMajor === undefined || kustomizeMajor < 4)(
    'kubectl kustomize renders each kustomization to the same objects as the test renderer',
    () => {
      for (const dir of DIRS) {
        const out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        const theirs = parseAllDocuments(out).map((d) => d.toJS() as Obj);
        const key = (o: Obj): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
        const ours = objectsOf(relative(DEPLOY, dir));
        expect(theirs.map(key).sort(), dir).toEqual(ours.map(key).sort());
        for (const object of ours) {
          expect(normalized(theirs.find((t) => key(t) === key(object))), `${dir}: ${key(object)}`).toEqual(normalized(object));
        }
      }
    },
  );
});

describe('the schema check refuses what a cluster would', () => {
  const base = (): Obj => structuredClone(engineDeployment(objectsOf('base')));

  it('an unknown (misspelt) field, however deep', async () => {
    const deployment = base();
    deployment.spec.template.spec.containers[0].readinessProbe.httpGet.pathh = '/readyz';
    await expect(validateObject(deployment)).rejects.toThrow('unknown field /spec/template/spec/containers/0/readinessProbe/httpGet/pathh');
    const top = base();
    top.spec.replica = 2;
    await expect(validateObject(top)).rejects.toThrow('unknown field /spec/replica');
  });

  it('a wrong type, a missing required field, a removed API version', async () => {
    const wrongType = base();
    wrongType.spec.replicas = 'two';
    await expect(validateObject(wrongType)).rejects.toThrow(/replicas/);
    const missing = base();
    delete missing.spec.selector;
    await expect(validateObject(missing)).rejects.toThrow(/selector/);
    const old = structuredClone(find(objectsOf('base'), 'HorizontalPodAutoscaler', 'wasm-engine'));
    old.apiVersion = 'autoscaling/v2beta2';
    await expect(validateObject(old)).rejects.toThrow(/not one of the API versions/);
  });
});

describe('the manifests and the engine agree', () => {
  it('every environment variable and config file key the engine container gets is a setting the engine knows', () => {
    for (const name of rendered.keys()) expect(unknownSettings(objectsOf(name)), name).toEqual([]);
    // The check itself: a name the engine does not know is reported.
    const objects = structuredClone(objectsOf('base'));
    engineContainer(objects).env.push({ name: 'WASM_ENGINE_WORKER', value: '2' });
    expect(unknownSettings(objects)).toEqual(['env WASM_ENGINE_WORKER']);
  });

  it('the image tag is the package version', () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const name of rendered.keys()) expect(engineContainer(objectsOf(name)).image, name).toMatch(new RegExp(`:${version.replace(/\./g, '\\.')}$`));
  });

  it("the README's secret commands make every Secret the manifests read, with the keys they read", async () => {
    const secrets = readmeSecrets();
    expect(secrets.map((s) => `${s.metadata.namespace ?? ''}/${s.metadata.name}`).sort()).toEqual([
      '/wasm-engine-basic-auth',
      '/wasm-engine-store',
      'openfaas/basic-auth',
      'openfaas/wasm-engine-store',
    ]);
    for (const secret of secrets) await validateObject(secret);
    for (const [name, objects] of rendered) {
      const namespace = (objects[0]!.metadata.namespace as string | undefined) ?? '';
      const made = (secretName: string): Obj | undefined => secrets.find((s) => s.metadata.name === secretName && (s.metadata.namespace ?? '') === namespace);
      for (const deployment of objects.filter((o) => o.kind === 'Deployment') as Obj[]) {
        const pod = deployment.spec.template.spec;
        for (const volume of pod.volumes ?? []) {
          if (!volume.secret) continue;
          expect(made(volume.secret.secretName), `${name}: Secret ${volume.secret.secretName}`).toBeDefined();
          // Mounted as OpenFaaS mounts it: a directory of the two files.
          expect(Object.keys(made(volume.secret.secretName).stringData).sort()).toEqual(['basic-auth-password', 'basic-auth-user']);
        }
        for (const container of pod.containers) {
          for (const env of container.env ?? []) {
            const ref = env.valueFrom?.secretKeyRef;
            if (!ref) continue;
            expect(made(ref.name)?.stringData[ref.key], `${name}: Secret ${ref.name} key ${ref.key}`).toBeDefined();
          }
        }
      }
    }
  });

  describe('the engine started with the ConfigMap config file', () => {
    let engine: EngineProcess;
    let work: string;
    const config = engineConfigFile(objectsOf('base'));

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'we-kube-'));
      // The config file and the Basic-auth Secret's files, as the pod mounts them; the flags put it
      // on a loopback port and a temporary data directory (flags win over the file).
      await writeFile(join(work, 'config.yaml'), config.text);
      await mkdir(join(work, 'secrets'));
      await writeFile(join(work, 'secrets', 'basic-auth-user'), 'admin');
      await writeFile(join(work, 'secrets', 'basic-auth-password'), 'kube-test-password');
      engine = await startEngineProcess({
        args: ['--host', '127.0.0.1', '--secret-mount-path', join(work, 'secrets')],
        env: { [CONFIG_ENV]: join(work, 'config.yaml') },
      });
    });

    afterAll(async () => {
      expect(await engine?.stop()).toBe(0);
      await rm(work, { recursive: true, force: true });
    });

    it('answers 200 on every probe path and the scrape path, and guards /system with the mounted credentials', async () => {
      for (const name of rendered.keys()) {
        const deployment = engineDeployment(objectsOf(name));
        const container = engineContainer(objectsOf(name));
        const paths = [container.startupProbe, container.livenessProbe, container.readinessProbe].map((p: Obj) => p.httpGet.path as string);
        paths.push(deployment.spec.template.metadata.annotations['prometheus.io/path']);
        for (const path of paths) expect((await call(engine.url, 'GET', path)).status, `${name}: ${path}`).toBe(200);
      }
      expect((await call(engine.url, 'GET', '/system/functions')).status).toBe(401);
      const auth = `Basic ${Buffer.from('admin:kube-test-password').toString('base64')}`;
      expect((await call(engine.url, 'GET', '/system/functions', undefined, { headers: ['authorization', auth] })).status).toBe(200);
    });

    it('the probes, the Service and the scrape annotation use the port the config file sets', () => {
      for (const [name, objects] of rendered) {
        const deployment = engineDeployment(objects);
        const container = engineContainer(objects);
        const port = container.ports.find((p: Obj) => p.name === 'http');
        expect(port.containerPort, name).toBe(engineConfigFile(objects).values.port);
        for (const probe of [container.startupProbe, container.livenessProbe, container.readinessProbe]) expect(probe.httpGet.port).toBe('http');
        expect(deployment.spec.template.metadata.annotations['prometheus.io/port']).toBe(String(port.containerPort));
        const service = find(objects, 'Service', 'wasm-engine');
        expect(service.spec.ports.map((p: Obj) => p.targetPort)).toEqual(['http']);
        expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
        expect(engineConfigFile(objects).values.host).toBe('0.0.0.0');
      }
    });
  });
});

describe('the pods', () => {
  it('need enableServiceLinks off: the variables Kubernetes makes for the Service wasm-engine stop the engine', () => {
    const work = mkdtempSync(join(tmpdir(), 'we-kube-links-'));
    try {
      writeFileSync(join(work, 'config.yaml'), engineConfigFile(objectsOf('base')).text);
      // What a pod gets from a Service wasm-engine on 10.96.0.10:8080 when service links are on.
      const links = {
        WASM_ENGINE_SERVICE_HOST: '10.96.0.10',
        WASM_ENGINE_SERVICE_PORT: '8080',
        WASM_ENGINE_PORT: 'tcp://10.96.0.10:8080',
        WASM_ENGINE_PORT_8080_TCP: 'tcp://10.96.0.10:8080',
      };
      const run = spawnSync(process.execPath, [CLI, 'serve', '--data-dir', join(work, 'data')], {
        env: { PATH: process.env.PATH ?? '', [CONFIG_ENV]: join(work, 'config.yaml'), ...links },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(run.status).toBe(2);
      expect(run.stderr).toContain('invalid setting WASM_ENGINE_PORT="tcp://10.96.0.10:8080"');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('run as a non-root user, read-only, with no capability and the runtime seccomp profile', () => {
    for (const [name, objects] of rendered) {
      for (const deployment of objects.filter((o) => o.kind === 'Deployment') as Obj[]) {
        const pod = deployment.spec.template.spec;
        const where = `${name}: ${deployment.metadata.name}`;
        expect(pod.securityContext, where).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
        expect(pod.automountServiceAccountToken, where).toBe(false);
        for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
          expect(container.securityContext, `${where}/${container.name}`).toEqual({
            runAsNonRoot: true,
            runAsUser: ENGINE_UID,
            runAsGroup: ENGINE_UID,
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            privileged: false,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          });
        }
      }
      const pod = engineDeployment(objects).spec.template.spec;
      // Service links would set WASM_ENGINE_PORT=tcp://… from the Service named wasm-engine.
      expect(pod.enableServiceLinks, name).toBe(false);
      expect(pod.securityContext.fsGroup, name).toBe(ENGINE_UID);
    }
  });

  it('drain as the probes expect: after SIGTERM /readyz is 503 while /healthz stays 200, the call in flight finishes, exit 0', async () => {
    const objects = objectsOf('base');
    const work = await mkdtemp(join(tmpdir(), 'we-kube-drain-'));
    await writeFile(join(work, 'config.yaml'), engineConfigFile(objects).text);
    await mkdir(join(work, 'secrets'));
    await writeFile(join(work, 'secrets', 'basic-auth-user'), 'admin');
    await writeFile(join(work, 'secrets', 'basic-auth-password'), 'kube-test-password');
    // The pod's settings, but on loopback, with the test's secrets, and deploys from a local file.
    const engine = await startEngineProcess({
      args: ['--host', '127.0.0.1', '--secret-mount-path', join(work, 'secrets'), '--local-images', 'allow'],
      env: { [CONFIG_ENV]: join(work, 'config.yaml') },
    });
    try {
      const container = engineContainer(objects);
      const [ready, alive] = [container.readinessProbe.httpGet.path as string, container.livenessProbe.httpGet.path as string];
      const auth = ['content-type', 'application/json', 'authorization', `Basic ${Buffer.from('admin:kube-test-password').toString('base64')}`];
      const deployed = await call(engine.url, 'POST', '/function/deploy', { function_name: 'busy', function_image: `file:${cFixture('ops', 'busy')}` }, { headers: auth });
      expect(deployed.status, deployed.text).toBe(200);
      const inFlight = call(engine.url, 'POST', '/function/invoke', { function_name: 'busy', args: ['4000'] });
      await eventually(async () => /wasm_engine_invocations_in_flight(\{[^}]*\})? 1\b/.test((await call(engine.url, 'GET', '/metrics')).text), 'a call in flight');
      engine.child.kill('SIGTERM');
      await eventually(async () => (await call(engine.url, 'GET', ready)).status === 503, `${ready} says not ready`);
      // Liveness must not restart a draining pod.
      expect((await call(engine.url, 'GET', alive)).status).toBe(200);
      expect((await inFlight).text).toBe('status code: 200, message: done');
      expect(await engine.exited).toBe(0);
    } finally {
      await engine.kill();
      await rm(work, { recursive: true, force: true });
    }
  });

  it('write only to volumes: the data directory and /tmp', () => {
    for (const [name, objects] of rendered) {
      const deployment = engineDeployment(objects);
      const container = engineContainer(objects);
      const config = engineConfigFile(objects).values;
      const writable = container.volumeMounts.filter((m: Obj) => !m.readOnly).map((m: Obj) => m.mountPath).sort();
      expect(writable, name).toEqual([config['data-dir'], '/tmp'].sort());
      expect(volumeOf(deployment, mountAt(container, '/tmp').name).emptyDir, name).toBeDefined();
      expect(mountAt(container, config['secret-mount-path'] as string).readOnly, name).toBe(true);
    }
  });

  it('are given the time to drain: preStop pause + shutdown-timeout-ms fit in the grace period, which outlasts a call', () => {
    for (const [name, objects] of rendered) {
      const pod = engineDeployment(objects).spec.template.spec;
      const container = engineContainer(objects);
      const config = engineConfigFile(objects).values;
      expect(container.readinessProbe.httpGet.path, name).toBe('/readyz');
      expect(container.livenessProbe.httpGet.path, name).toBe('/healthz');
      const pause = container.lifecycle.preStop.sleep.seconds as number;
      const shutdownMs = config['shutdown-timeout-ms'] as number;
      expect(pause, name).toBeGreaterThanOrEqual(1);
      // The drain waits for calls in flight up to shutdown-timeout-ms, then closes (about 200 ms
      // more, and the workers' and store's close): a second of margin at least.
      expect(pod.terminationGracePeriodSeconds, name).toBeGreaterThanOrEqual(pause + Math.ceil(shutdownMs / 1000) + 1);
      // A call that began just before SIGTERM may run its whole time limit.
      expect(shutdownMs, name).toBeGreaterThanOrEqual(config['timeout-ms'] as number);
    }
  });

  it('have resources that cover the workers the config file starts', () => {
    const mebibytes = (q: string): number => {
      const m = /^(\d+)(Mi|Gi)$/.exec(q);
      if (!m) throw new Error(`quantity ${q}: expected Mi or Gi`);
      return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
    };
    const cores = (q: string): number => (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));
    for (const [name, objects] of rendered) {
      const { requests, limits } = engineContainer(objects).resources;
      const c = engineConfigFile(objects).values as Record<string, number>;
      // Main thread and Node.js 384 (kept stderr lines included), per worker its heap (+16 V8
      // grants past it), a call's guest memory and 64 of idle instances, per HTTP thread 32 of
      // heap, a call's guest memory and 64 of idle inline instances, compiled modules twice
      // (binaries and machine code).
      const threads = c['http-threads']!;
      expect(threads, `${name}: http-threads is set (its default counts the node's cores)`).toBeGreaterThanOrEqual(1);
      const needed =
        384 + c.workers! * (c['worker-heap-mb']! + 16 + c['memory-limit-mb']! + 64) + threads * (32 + c['memory-limit-mb']! + 64) + 2 * c['module-cache-mb']!;
      expect(mebibytes(limits.memory), name).toBeGreaterThanOrEqual(needed);
      expect(mebibytes(requests.memory), name).toBe(mebibytes(limits.memory));
      expect(cores(limits.cpu), name).toBeGreaterThanOrEqual(c.workers! + threads);
      expect(cores(requests.cpu), name).toBeLessThanOrEqual(cores(limits.cpu));
    }
  });
});

describe('the variants', () => {
  it('base: replicas on the PostgreSQL store, autoscaled from 2, one down at a time', () => {
    const objects = objectsOf('base');
    const deployment = engineDeployment(objects);
    const env = engineContainer(objects).env;
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(env.find((e: Obj) => e.name === 'WASM_ENGINE_STORE').valueFrom.secretKeyRef).toBeDefined();
    expect(env.find((e: Obj) => e.name === 'WASM_ENGINE_NODE_NAME').valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    expect(volumeOf(deployment, 'data').emptyDir).toBeDefined();
    const hpa = find(objects, 'HorizontalPodAutoscaler', 'wasm-engine');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'wasm-engine' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    const pdb = find(objects, 'PodDisruptionBudget', 'wasm-engine');
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(pdb.spec.maxUnavailable).toBe(1);
  });

  it('file-store: one replica on a PersistentVolumeClaim, Recreate, no autoscaler or budget, no database', () => {
    const objects = objectsOf('overlays/file-store');
    const deployment = engineDeployment(objects);
    const container = engineContainer(objects);
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
    const claim = volumeOf(deployment, mountAt(container, engineConfigFile(objects).values['data-dir'] as string).name).persistentVolumeClaim.claimName;
    expect(find(objects, 'PersistentVolumeClaim', claim).spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(objects.filter((o) => o.kind === 'HorizontalPodAutoscaler' || o.kind === 'PodDisruptionBudget')).toEqual([]);
    expect(container.env.map((e: Obj) => e.name)).toEqual([CONFIG_ENV]);
  });

  it("openfaas: the gateway's provider is the engine's Service, and both read OpenFaaS's basic-auth Secret at /var/secrets", () => {
    const objects = objectsOf('overlays/openfaas');
    const gateway = find(objects, 'Deployment', 'gateway');
    const gw = gateway.spec.template.spec.containers[0];
    const env = Object.fromEntries(gw.env.map((e: Obj) => [e.name, e.value]));
    const service = find(objects, 'Service', 'wasm-engine');
    expect(env.functions_provider_url).toBe(`http://${service.metadata.name}.${service.metadata.namespace}:${service.spec.ports[0].port}/`);
    expect(env.direct_functions).toBe('false');
    expect(env.basic_auth).toBe('true');
    // The gateway sends its credentials on /system/* only, not on invocations: auth-invoke stays off.
    expect(engineConfigFile(objects).values['auth-invoke'] ?? false).toBe(false);
    const engine = engineDeployment(objects);
    const engineSecretPath = engineConfigFile(objects).values['secret-mount-path'];
    expect(env.secret_mount_path).toBe(engineSecretPath);
    expect(volumeOf(gateway, mountAt(gw, env.secret_mount_path).name).secret.secretName).toBe('basic-auth');
    expect(volumeOf(engine, mountAt(engineContainer(objects), engineSecretPath as string).name).secret.secretName).toBe('basic-auth');
    expect(new Set(objects.map((o) => o.metadata.namespace))).toEqual(new Set(['openfaas']));
  });
});
