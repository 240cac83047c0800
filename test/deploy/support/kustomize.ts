/**
 * A small renderer of the kustomizations under deploy/kubernetes, for machines without a usable
 * kubectl: Debian's only kubectl (kubernetes-client, 1.20) embeds kustomize v2.0.3, which cannot
 * read a kustomization that lists a directory in `resources`. It does what those files use, as
 * kustomize v5 does it, and refuses anything else (an unknown field, a list it cannot merge), so it
 * never renders something kubectl would render differently without saying so. Where kubectl is
 * installed, the test compares the two renderings.
 *
 * Supported: resources (files and directories), namespace, configMapGenerator (files, the name
 * suffixed with kustomize's content hash, references in pod specs updated), patches (strategic
 * merge, from files, `$patch: delete` of list items and of whole resources), images.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type KubeObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string } & Record<string, unknown>;
};

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'configMapGenerator', 'patches', 'images']);

/** Parses every YAML document of a file, refusing a file with none or a document that is not a mapping. */
export function readYamlDocuments(path: string): JsonObject[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  const out: JsonObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as Json;
    if (value === null) continue;
    if (!isObject(value)) throw new Error(`${path}: a document is not a mapping`);
    out.push(value);
  }
  return out;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asObject(value: Json | undefined, where: string): JsonObject {
  if (!isObject(value)) throw new Error(`${where}: expected a mapping`);
  return value;
}

function asArray(value: Json | undefined, where: string): Json[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${where}: expected a list`);
  return value;
}

function asString(value: Json | undefined, where: string): string {
  if (typeof value !== 'string') throw new Error(`${where}: expected a string`);
  return value;
}

/** Renders the kustomization in `dir` to its objects. */
export function renderKustomization(dir: string): KubeObject[] {
  return build(dir).objects as unknown as KubeObject[];
}

interface Built {
  objects: JsonObject[];
  /** Generated ConfigMaps: the name they were declared with → the name with its hash. */
  generated: Map<string, string>;
}

function build(dir: string): Built {
  const file = join(dir, 'kustomization.yaml');
  const [k, ...more] = readYamlDocuments(file);
  if (!k || more.length > 0) throw new Error(`${file}: expected one document`);
  for (const key of Object.keys(k)) {
    if (!KNOWN_FIELDS.has(key)) throw new Error(`${file}: the test's renderer does not support the field ${key}`);
  }
  const objects: JsonObject[] = [];
  const generated = new Map<string, string>();
  for (const entry of asArray(k.resources, `${file}: resources`)) {
    const path = join(dir, asString(entry, `${file}: resources`));
    if (statSync(path).isDirectory()) {
      const sub = build(path);
      objects.push(...sub.objects);
      for (const [from, to] of sub.generated) generated.set(from, to);
    } else {
      objects.push(...readYamlDocuments(path));
    }
  }
  const fresh: JsonObject[] = [];
  for (const entry of asArray(k.configMapGenerator, `${file}: configMapGenerator`)) {
    const generator = asObject(entry, `${file}: configMapGenerator`);
    for (const key of Object.keys(generator)) {
      if (key !== 'name' && key !== 'files') throw new Error(`${file}: configMapGenerator: the test's renderer does not support ${key}`);
    }
    const data: JsonObject = {};
    for (const f of asArray(generator.files, `${file}: configMapGenerator files`)) {
      const name = asString(f, `${file}: configMapGenerator files`);
      if (name.includes('=')) throw new Error(`${file}: configMapGenerator: key=path is not supported`);
      data[basename(name)] = readFileSync(join(dir, name), 'utf8');
    }
    const configMap: JsonObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: asString(generator.name, `${file}: configMapGenerator name`) }, data };
    fresh.push(configMap);
    objects.push(configMap);
  }
  for (const entry of asArray(k.patches, `${file}: patches`)) {
    const patchRef = asObject(entry, `${file}: patches`);
    if (Object.keys(patchRef).some((key) => key !== 'path')) throw new Error(`${file}: patches: only { path } entries are supported`);
    const patchFile = join(dir, asString(patchRef.path, `${file}: patches path`));
    for (const patch of readYamlDocuments(patchFile)) applyPatch(objects, patch, patchFile);
  }
  if (k.namespace !== undefined) {
    const namespace = asString(k.namespace, `${file}: namespace`);
    for (const object of objects) asObject(object.metadata, 'metadata').namespace = namespace;
  }
  for (const entry of asArray(k.images, `${file}: images`)) applyImage(objects, asObject(entry, `${file}: images`), file);
  // Kustomize names a generated ConfigMap once its own kustomization is built: the hash of its
  // kind, data and an empty name (as v5 computes it), in the alphabet kustomize uses.
  for (const configMap of fresh) {
    const metadata = asObject(configMap.metadata, 'metadata');
    const name = asString(metadata.name, 'metadata.name');
    const hashed = `${name}-${configMapHash(asObject(configMap.data, 'data'))}`;
    metadata.name = hashed;
    generated.set(name, hashed);
  }
  for (const object of objects) renameConfigMapReferences(object, generated);
  return { objects, generated };
}

function configMapHash(data: JsonObject): string {
  const sorted: JsonObject = {};
  for (const key of Object.keys(data).sort()) sorted[key] = data[key]!;
  // Go's encoding/json escapes these; JSON.stringify does not.
  const json = JSON.stringify({ data: sorted, kind: 'ConfigMap', name: '' })
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
  const hex = createHash('sha256').update(json).digest('hex').slice(0, 10);
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return hex.replace(/[013ae]/g, (c) => swap[c]!);
}

function podSpecOf(object: JsonObject): JsonObject | undefined {
  const spec = object.spec;
  if (!isObject(spec)) return undefined;
  const template = spec.template;
  if (isObject(template) && isObject(template.spec)) return template.spec;
  return undefined;
}

function renameConfigMapReferences(object: JsonObject, names: Map<string, string>): void {
  const pod = podSpecOf(object);
  if (!pod) return;
  for (const volume of asArray(pod.volumes, 'volumes')) {
    const configMap = asObject(volume, 'volume').configMap;
    if (isObject(configMap) && typeof configMap.name === 'string') configMap.name = names.get(configMap.name) ?? configMap.name;
  }
  for (const container of [...asArray(pod.containers, 'containers'), ...asArray(pod.initContainers, 'initContainers')]) {
    const c = asObject(container, 'container');
    for (const from of asArray(c.envFrom, 'envFrom')) {
      const ref = asObject(from, 'envFrom').configMapRef;
      if (isObject(ref) && typeof ref.name === 'string') ref.name = names.get(ref.name) ?? ref.name;
    }
    for (const env of asArray(c.env, 'env')) {
      const valueFrom = asObject(env, 'env').valueFrom;
      const ref = isObject(valueFrom) ? valueFrom.configMapKeyRef : undefined;
      if (isObject(ref) && typeof ref.name === 'string') ref.name = names.get(ref.name) ?? ref.name;
    }
  }
}

function applyImage(objects: JsonObject[], image: JsonObject, file: string): void {
  for (const key of Object.keys(image)) {
    if (!['name', 'newName', 'newTag'].includes(key)) throw new Error(`${file}: images: ${key} is not supported`);
  }
  const name = asString(image.name, `${file}: images name`);
  for (const object of objects) {
    const pod = podSpecOf(object);
    if (!pod) continue;
    for (const container of [...asArray(pod.containers, 'containers'), ...asArray(pod.initContainers, 'initContainers')]) {
      const c = asObject(container, 'container');
      const current = asString(c.image, 'image');
      const match = /^(.*?)(?::([^:/@]+))?(@.*)?$/.exec(current)!;
      if (match[1] !== name) continue;
      const newName = typeof image.newName === 'string' ? image.newName : name;
      const tag = typeof image.newTag === 'string' ? `:${image.newTag}` : match[2] !== undefined ? `:${match[2]}` : '';
      c.image = `${newName}${tag}${match[3] ?? ''}`;
    }
  }
}

/** A strategic-merge patch on the object with its kind and name; `$patch: delete` removes the object. */
function applyPatch(objects: JsonObject[], patch: JsonObject, file: string): void {
  const kind = asString(patch.kind, `${file}: kind`);
  const name = asString(asObject(patch.metadata, `${file}: metadata`).name, `${file}: metadata.name`);
  const index = objects.findIndex((o) => o.kind === kind && asObject(o.metadata, 'metadata').name === name);
  if (index < 0) throw new Error(`${file}: no ${kind} named ${name} to patch`);
  if (patch.$patch === 'delete') {
    objects.splice(index, 1);
    return;
  }
  if (patch.$patch !== undefined) throw new Error(`${file}: $patch: ${String(patch.$patch)} is not supported`);
  mergeObject(objects[index]!, patch, file, kind);
}

/** The merge keys of the lists the manifests patch (as in Kubernetes' types); any other list is refused. */
function mergeKeyOf(field: string, kind: string): string | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'env':
    case 'volumes':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'ports':
      return kind === 'Service' ? 'port' : 'containerPort';
    default:
      return undefined;
  }
}

function mergeObject(target: JsonObject, patch: JsonObject, file: string, kind: string): void {
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) throw new Error(`${file}: ${key} is not supported here`);
    if (value === null) {
      delete target[key];
    } else if (isObject(value) && isObject(target[key])) {
      mergeObject(target[key], value, file, kind);
    } else if (Array.isArray(value) && Array.isArray(target[key])) {
      const mergeKey = mergeKeyOf(key, kind);
      if (!mergeKey) throw new Error(`${file}: the test's renderer does not know how to merge the list ${key}`);
      target[key] = mergeList(target[key], value, mergeKey, file, kind);
    } else {
      target[key] = value;
    }
  }
}

function mergeList(target: Json[], patch: Json[], key: string, file: string, kind: string): Json[] {
  const out = [...target];
  for (const item of patch) {
    const p = asObject(item, `${file}: list item`);
    const at = out.findIndex((t) => isObject(t) && t[key] === p[key]);
    if (p.$patch === 'delete') {
      if (at < 0) throw new Error(`${file}: no list item with ${key} ${String(p[key])} to delete`);
      out.splice(at, 1);
    } else if (at >= 0) {
      mergeObject(out[at] as JsonObject, p, file, kind);
    } else {
      out.push(p);
    }
  }
  return out;
}
