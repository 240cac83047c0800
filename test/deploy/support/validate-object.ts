/**
 * Validates a Kubernetes object against the API schemas of the `kubernetes-models` package (the
 * OpenAPI schemas of Kubernetes, compiled with Ajv): each object is built with its model class and
 * `validate()`d — types, required fields, formats, enumerations.
 *
 * Those schemas do not forbid unknown fields (the API server prunes or refuses them, depending on
 * its field validation), so a misspelt field would pass. To refuse unknown fields too, the same
 * validation is run once more over a copy of the object in which every mapping records which of
 * its keys the validator looked at: a compiled schema reads each property it declares (a mapping
 * of free keys, such as labels, is iterated whole), so a key it never read is one the schema does
 * not have. (A declared property whose schema accepts anything would be read by no code and so be
 * reported too: the kinds the manifests use have none, and such a report fails loudly rather than
 * letting a wrong field through.)
 */
import type { KubeObject } from './kustomize.js';

/** The API versions a current cluster serves for the kinds the manifests use (no beta or removed ones). */
export const SERVED_API_VERSIONS: Record<string, string> = {
  Deployment: 'apps/v1',
  Service: 'v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  PersistentVolumeClaim: 'v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  PodDisruptionBudget: 'policy/v1',
  Namespace: 'v1',
};

interface Model {
  validate(): void;
  toJSON(): unknown;
}
type ModelClass = new (data: unknown) => Model;

async function modelClass(apiVersion: string, kind: string): Promise<ModelClass> {
  if (SERVED_API_VERSIONS[kind] !== apiVersion) {
    throw new Error(`${apiVersion} ${kind}: not one of the API versions the manifests may use (${JSON.stringify(SERVED_API_VERSIONS)})`);
  }
  // kubernetes-models has one module per kind: kubernetes-models/<group>/<version>/<Kind>.
  const specifier = `kubernetes-models/${apiVersion}/${kind}`;
  const module = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
  const ctor = module[kind];
  if (typeof ctor !== 'function') throw new Error(`kubernetes-models has no model ${apiVersion} ${kind}`);
  return ctor as ModelClass;
}

interface Seen {
  path: string;
  keys: string[];
  read: Set<string>;
}

/** A deep copy whose mappings note every key read (get, has, enumeration). */
function tracked(value: unknown, path: string, seen: Seen[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item, i) => tracked(item, `${path}/${i}`, seen));
  const source = value as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(source)) copy[key] = tracked(item, `${path}/${key}`, seen);
  const entry: Seen = { path, keys: Object.keys(source), read: new Set() };
  seen.push(entry);
  return new Proxy(copy, {
    get(target, key, receiver) {
      if (typeof key === 'string') entry.read.add(key);
      return Reflect.get(target, key, receiver) as unknown;
    },
    has(target, key) {
      if (typeof key === 'string') entry.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      for (const key of Reflect.ownKeys(target)) if (typeof key === 'string') entry.read.add(key);
      return Reflect.ownKeys(target);
    },
  });
}

/**
 * Throws with every problem found: schema errors (from the model's validate()) and unknown
 * fields, each with its path in the object (`/spec/template/spec/containers/0/bogus`).
 */
export async function validateObject(object: KubeObject): Promise<void> {
  const name = `${object.kind} ${object.metadata?.name ?? '(no name)'}`;
  const Ctor = await modelClass(object.apiVersion, object.kind);
  const model = new Ctor(object);
  try {
    model.validate();
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message}`);
  }
  const seen: Seen[] = [];
  // validate() reads `this`: run it on the tracked copy.
  Ctor.prototype.validate.call(tracked(model.toJSON(), '', seen));
  const unknown = seen.flatMap((s) => s.keys.filter((key) => !s.read.has(key)).map((key) => `${s.path}/${key}`));
  if (unknown.length > 0) throw new Error(`${name}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
}
