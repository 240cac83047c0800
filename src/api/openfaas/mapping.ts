/**
 * Between the faas-provider types and the engine's requests and records. What each
 * FunctionDeployment field means here (and which are accepted and ignored) is in the README.
 */
import type { DeployRequest, FunctionRunState } from '../../core/engine.js';
import { EngineError } from '../../errors.js';
import type { FunctionLimitsOverride } from '../../store/index.js';
import type { FunctionDeployment, FunctionStatus } from './schemas.js';

/** The one namespace of this provider, OpenFaaS's default function namespace. */
export const NAMESPACE = 'openfaas-fn';

/** Annotations that set what the historical deploy body sets. */
export const ANNOTATION = {
  wasiCap: 'com.wasmengine.wasi_cap',
  timeoutMs: 'com.wasmengine.timeout_ms',
  maxOutputBytes: 'com.wasmengine.max_output_bytes',
  entrypoint: 'com.wasmengine.entrypoint',
} as const;

/** OpenFaaS's label for a function's initial (minimum) replicas. */
export const SCALE_MIN_LABEL = 'com.openfaas.scale.min';

export function checkNamespace(namespace: string | undefined | null, field = 'namespace'): void {
  if (namespace !== undefined && namespace !== null && namespace !== '' && namespace !== NAMESPACE) {
    throw new EngineError('INVALID_REQUEST', `invalid ${field} ${JSON.stringify(namespace)}: this provider has one namespace, ${NAMESPACE}`);
  }
}

/** What a FunctionDeployment asks of the engine, for deploy (POST) or update (PUT). */
export function deployRequestOf(body: FunctionDeployment, operation: 'deploy' | 'update'): DeployRequest {
  checkNamespace(body.namespace);
  const annotations = body.annotations ?? {};
  const labels = body.labels ?? {};
  const limits: FunctionLimitsOverride = {};
  const timeout = wholeNumber(annotations, ANNOTATION.timeoutMs, 'annotation');
  if (timeout !== undefined) limits.timeout_ms = timeout;
  const maxOutput = wholeNumber(annotations, ANNOTATION.maxOutputBytes, 'annotation');
  if (maxOutput !== undefined) limits.max_output_bytes = maxOutput;
  if (body.limits?.memory) limits.memory_limit_mb = memoryMegabytes(body.limits.memory);
  const wasiCap = booleanAnnotation(annotations, ANNOTATION.wasiCap);
  const entrypoint = annotations[ANNOTATION.entrypoint];
  // Only a new deploy takes its initial replicas from the label: an update keeps the current scale.
  const replicas = operation === 'deploy' ? wholeNumber(labels, SCALE_MIN_LABEL, 'label') : undefined;
  return {
    name: body.service,
    image: body.image,
    ...(wasiCap === undefined ? {} : { wasiCap }),
    ...(entrypoint === undefined || entrypoint === '' ? {} : { entrypoint }),
    limits,
    env: body.envVars ?? {},
    labels,
    annotations,
    ...(replicas === undefined ? {} : { replicas }),
  };
}

export function functionStatusOf(state: FunctionRunState): FunctionStatus {
  const { record } = state;
  return {
    name: record.name,
    image: record.image,
    namespace: NAMESPACE,
    ...(Object.keys(record.env).length > 0 ? { envVars: record.env } : {}),
    ...(record.labels ? { labels: record.labels } : {}),
    ...(record.annotations ? { annotations: record.annotations } : {}),
    ...(record.limits.memory_limit_mb === undefined ? {} : { limits: { memory: `${record.limits.memory_limit_mb}Mi` } }),
    invocationCount: state.invocations,
    replicas: state.replicas,
    availableReplicas: state.availableReplicas,
    createdAt: record.deployedAt,
  };
}

const QUANTITY = /^([0-9]+(?:\.[0-9]+)?)(?:e([0-9]+))?(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$/;
const FACTOR: Record<string, number> = {
  '': 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
};

/** A Kubernetes memory quantity (`128Mi`, `1G`, `134217728`) in whole MiB, rounded up. */
export function memoryMegabytes(quantity: string): number {
  const match = QUANTITY.exec(quantity.trim());
  if (!match) {
    throw new EngineError('INVALID_REQUEST', `invalid limits.memory ${JSON.stringify(quantity)}: expected a quantity such as 128Mi or 1G`);
  }
  const bytes = Number(match[1]) * 10 ** Number(match[2] ?? 0) * FACTOR[match[3] ?? '']!;
  return Math.max(1, Math.ceil(bytes / 1024 ** 2));
}

/** A whole number from a FunctionDeployment's annotations or labels; `kind` names which in errors. */
function wholeNumber(values: Record<string, string>, key: string, kind: 'annotation' | 'label'): number | undefined {
  const raw = values[key];
  if (raw === undefined) return undefined;
  if (!/^[0-9]+$/.test(raw.trim())) {
    throw new EngineError('INVALID_REQUEST', `invalid ${kind} ${key} ${JSON.stringify(raw)}: expected a whole number`);
  }
  return Number(raw.trim());
}

function booleanAnnotation(annotations: Record<string, string>, key: string): boolean | undefined {
  const raw = annotations[key];
  if (raw === undefined) return undefined;
  const word = raw.trim().toLowerCase();
  if (word === 'true') return true;
  if (word === 'false') return false;
  throw new EngineError('INVALID_REQUEST', `invalid annotation ${key} ${JSON.stringify(raw)}: expected "true" or "false"`);
}
