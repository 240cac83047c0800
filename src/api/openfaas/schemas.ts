/**
 * The faas-provider API types (openfaas/faas-provider `types`), field for field, as request and
 * response schemas. Requests accept unknown fields, as Go's JSON decoder does, and `null` wherever
 * Go writes a nil map or slice.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const nullable = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]));
// additionalProperties, which OpenAPI 3.0 knows, rather than Type.Record's patternProperties, which it does not.
const stringMap = Type.Unsafe<Record<string, string>>(Type.Object({}, { additionalProperties: Type.String() }));

export const FunctionResources = Type.Object(
  {
    memory: Type.Optional(Type.String({ description: 'Kubernetes quantity, e.g. 128Mi: the memory limit' })),
    cpu: Type.Optional(Type.String({ description: 'Accepted and ignored' })),
  },
  { additionalProperties: true },
);

export const FunctionDeployment = Type.Object(
  {
    service: Type.String({ description: 'Function name' }),
    image: Type.String({ description: 'Image reference (as for /function/deploy)' }),
    namespace: Type.Optional(Type.String({ description: 'Empty or openfaas-fn: this provider has one namespace' })),
    envProcess: Type.Optional(Type.String({ description: 'Accepted and ignored: the module is the process' })),
    envVars: nullable(stringMap),
    constraints: nullable(Type.Array(Type.String(), { description: 'Accepted and ignored' })),
    secrets: nullable(Type.Array(Type.String(), { description: 'Accepted and ignored' })),
    labels: nullable(stringMap),
    annotations: nullable(stringMap),
    limits: nullable(FunctionResources),
    requests: nullable(FunctionResources),
    readOnlyRootFilesystem: Type.Optional(Type.Boolean({ description: 'Accepted and ignored: there is no file system' })),
  },
  { additionalProperties: true },
);
export type FunctionDeployment = Static<typeof FunctionDeployment>;

export const FunctionStatus = Type.Object({
  name: Type.String(),
  image: Type.String(),
  namespace: Type.String(),
  envVars: Type.Optional(stringMap),
  labels: Type.Optional(stringMap),
  annotations: Type.Optional(stringMap),
  limits: Type.Optional(FunctionResources),
  invocationCount: Type.Number(),
  replicas: Type.Integer(),
  availableReplicas: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
});
export type FunctionStatus = Static<typeof FunctionStatus>;

export const DeleteFunctionRequest = Type.Object(
  { functionName: Type.String(), namespace: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
export type DeleteFunctionRequest = Static<typeof DeleteFunctionRequest>;

export const ScaleServiceRequest = Type.Object(
  {
    serviceName: Type.Optional(Type.String()),
    replicas: Type.Integer({ minimum: 0, description: 'Concurrency bound = replicas x concurrency-per-replica; 0 pauses' }),
    namespace: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);
export type ScaleServiceRequest = Static<typeof ScaleServiceRequest>;

export const NameParams = Type.Object({ name: Type.String() });
export type NameParams = Static<typeof NameParams>;

export const NamespaceQuery = Type.Object({ namespace: Type.Optional(Type.String()) }, { additionalProperties: true });
export type NamespaceQuery = Static<typeof NamespaceQuery>;

export const LogsQuery = Type.Object(
  {
    name: Type.Optional(Type.String({ description: 'Function name (required)' })),
    namespace: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String({ description: 'Only lines from this instance' })),
    tail: Type.Optional(Type.String({ description: 'The last N lines; <= 0: all' })),
    since: Type.Optional(Type.String({ description: 'RFC 3339 time: only lines at or after it' })),
    follow: Type.Optional(Type.String({ description: 'true: keep streaming new lines' })),
  },
  { additionalProperties: true },
);
export type LogsQuery = Static<typeof LogsQuery>;

export const LogMessage = Type.Object({
  name: Type.String(),
  namespace: Type.String(),
  instance: Type.String(),
  timestamp: Type.String({ format: 'date-time' }),
  text: Type.String(),
});

export const ProviderInfo = Type.Object({
  provider: Type.String(),
  orchestration: Type.String(),
  version: Type.Object({ sha: Type.String(), release: Type.String() }),
  node: Type.Optional(Type.String({ description: 'The engine node that answered (--node-name)' })),
});

export const PlainText = Type.String({ description: 'text/plain' });
