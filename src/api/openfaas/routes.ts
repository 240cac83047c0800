/**
 * The faas-provider routes (openfaas/faas-provider's serve.go), translated to calls of the same
 * core Engine the historical routes use: one set of functions for both APIs.
 */
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Engine } from '../../core/engine.js';
import { EngineError } from '../../errors.js';
import type { FunctionLogs, LogMessage as LogLine } from '../../logs/function-logs.js';
import { usePlainErrors, type ErrorTranslator } from '../plain-reply.js';
import { checkNamespace, deployRequestOf, functionStatusOf, NAMESPACE } from './mapping.js';
import {
  DeleteFunctionRequest,
  FunctionDeployment,
  FunctionStatus,
  LogMessage,
  LogsQuery,
  NameParams,
  NamespaceQuery,
  PlainText,
  ProviderInfo,
  ScaleServiceRequest,
} from './schemas.js';

export interface OpenFaasOptions {
  engine: Engine;
  logs: FunctionLogs;
  /** The provider's release and commit, for /system/info. */
  version: { release: string; sha: string };
  /** The node answering: with a shared store, one of several engines. */
  node?: string;
  translateError: ErrorTranslator;
}

const TAGS = ['OpenFaaS provider'];
const empty = { description: 'Empty body', type: 'null' } as const;
const errors = {
  '4xx': { description: 'The error as text (JSON with Accept: application/json)', content: { 'text/plain': { schema: PlainText } } },
} as const;

export async function openFaasRoutes(app: FastifyInstance, options: OpenFaasOptions): Promise<void> {
  const { engine, logs } = options;
  usePlainErrors(app, options.translateError);

  app.get<{ Querystring: NamespaceQuery }>(
    '/system/functions',
    {
      schema: {
        tags: TAGS,
        summary: 'List functions (FunctionStatus)',
        querystring: NamespaceQuery,
        response: { 200: Type.Array(FunctionStatus), ...errors },
      },
    },
    async (request) => {
      checkNamespace(request.query.namespace);
      return engine.list().map((record) => functionStatusOf(engine.runState(record.name)));
    },
  );

  app.post<{ Body: FunctionDeployment }>(
    '/system/functions',
    {
      schema: {
        tags: TAGS,
        summary: 'Deploy a function (FunctionDeployment)',
        body: FunctionDeployment,
        response: { 202: empty, ...errors },
      },
    },
    async (request, reply) => {
      await engine.deploy(deployRequestOf(request.body, 'deploy'));
      return reply.code(202).send();
    },
  );

  app.put<{ Body: FunctionDeployment }>(
    '/system/functions',
    {
      schema: {
        tags: TAGS,
        summary: 'Update a function in place (FunctionDeployment): no invocation fails during the swap',
        body: FunctionDeployment,
        response: { 200: empty, ...errors },
      },
    },
    async (request, reply) => {
      await engine.update(deployRequestOf(request.body, 'update'));
      return reply.code(200).send();
    },
  );

  app.delete<{ Body: DeleteFunctionRequest }>(
    '/system/functions',
    {
      schema: {
        tags: TAGS,
        summary: 'Delete a function (DeleteFunctionRequest)',
        body: DeleteFunctionRequest,
        response: { 200: empty, ...errors },
      },
    },
    async (request, reply) => {
      checkNamespace(request.body.namespace);
      await engine.delete(request.body.functionName);
      return reply.code(200).send();
    },
  );

  app.get<{ Params: NameParams; Querystring: NamespaceQuery }>(
    '/system/function/:name',
    {
      schema: {
        tags: TAGS,
        summary: 'One function (FunctionStatus)',
        params: NameParams,
        querystring: NamespaceQuery,
        response: { 200: FunctionStatus, ...errors },
      },
    },
    async (request) => {
      checkNamespace(request.query.namespace);
      return functionStatusOf(engine.runState(request.params.name));
    },
  );

  app.post<{ Params: NameParams; Body: ScaleServiceRequest }>(
    '/system/scale-function/:name',
    {
      schema: {
        tags: TAGS,
        summary: 'Scale a function (ScaleServiceRequest): replicas bound its concurrency, 0 pauses it',
        params: NameParams,
        body: ScaleServiceRequest,
        response: { 202: empty, ...errors },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const body = request.body;
      checkNamespace(body.namespace);
      if (body.serviceName !== undefined && body.serviceName !== '' && body.serviceName !== name) {
        throw new EngineError('INVALID_REQUEST', `serviceName ${JSON.stringify(body.serviceName)} differs from the function in the path, ${name}`);
      }
      await engine.scale(name, body.replicas);
      return reply.code(202).send();
    },
  );

  app.get(
    '/system/info',
    { schema: { tags: TAGS, summary: 'Provider information', response: { 200: ProviderInfo } } },
    async () => ({ provider: 'wasm-engine', orchestration: 'wasm', version: options.version, ...(options.node === undefined ? {} : { node: options.node }) }),
  );

  app.get(
    '/system/namespaces',
    { schema: { tags: TAGS, summary: 'Namespaces (one)', response: { 200: Type.Array(Type.String()) } } },
    async () => [NAMESPACE],
  );

  app.get<{ Querystring: LogsQuery }>(
    '/system/logs',
    {
      schema: {
        tags: TAGS,
        summary: "A function's stderr lines as NDJSON (faas-provider logs Message); follow=true streams new ones",
        querystring: LogsQuery,
        response: { 200: { description: 'One LogMessage per line', content: { 'application/x-ndjson': { schema: LogMessage } } }, ...errors },
      },
    },
    async (request, reply) => {
      const q = request.query;
      if (q.name === undefined || q.name === '') throw new EngineError('INVALID_REQUEST', 'missing query parameter name');
      checkNamespace(q.namespace);
      const tail = parseTail(q.tail);
      const since = parseSince(q.since);
      const follow = parseGoBool(q.follow);
      engine.query(q.name);
      // Lines come from this engine only; another instance has none here.
      const other = q.instance !== undefined && q.instance !== '' && q.instance !== logs.instanceName;
      const lines = other ? [] : logs.query({ name: q.name, ...(tail === undefined ? {} : { tail }), ...(since ? { since } : {}) });
      reply.type('application/x-ndjson');
      if (!follow) return reply.send(lines.map(ndjson).join(''));
      // A stream begun now would hold the server open past the drain.
      if (engine.shuttingDown) throw new EngineError('UNAVAILABLE', 'the engine is shutting down', { retryAfterSeconds: 1 });
      const stream = new PassThrough();
      if (lines.length > 0) stream.write(lines.map(ndjson).join(''));
      if (other) {
        stream.end();
        return reply.send(stream);
      }
      // A follower that does not keep up is disconnected rather than buffered for: what waits for
      // it (in the stream and in the socket) is bounded, and it can come back with `since`.
      const subscription = logs.subscribe(
        q.name,
        (messages) => {
          if (stream.destroyed) return;
          if (stream.writableLength + stream.readableLength + reply.raw.writableLength > FOLLOW_BUFFER_BYTES) {
            request.log.warn({ function: q.name }, 'log follower not reading: disconnected');
            subscription.close();
            reply.raw.destroy();
            stream.destroy();
            return;
          }
          let chunk = '';
          for (const message of messages) chunk += ndjson(message);
          stream.write(chunk);
        },
        () => stream.end(),
      );
      stream.once('close', () => subscription.close());
      reply.raw.once('close', () => {
        subscription.close();
        stream.destroy();
      });
      return reply.send(stream);
    },
  );
}

/** What may wait unread for one log follower before it is disconnected. */
export const FOLLOW_BUFFER_BYTES = 8 * 1024 * 1024;

function ndjson(line: LogLine): string {
  return `${JSON.stringify(line)}\n`;
}

/** As faas-provider: an integer; <= 0 means all lines. */
function parseTail(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^[+-]?[0-9]+$/.test(raw)) throw new EngineError('INVALID_REQUEST', `invalid query parameter tail ${JSON.stringify(raw)}: expected an integer`);
  return Number(raw);
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function parseSince(raw: string | undefined): Date | undefined {
  if (raw === undefined || raw === '') return undefined;
  const time = RFC3339.test(raw) ? new Date(raw) : undefined;
  if (!time || Number.isNaN(time.getTime())) {
    throw new EngineError('INVALID_REQUEST', `invalid query parameter since ${JSON.stringify(raw)}: expected an RFC 3339 time`);
  }
  return time;
}

/** Go's strconv.ParseBool, with faas-provider's "anything else is false". */
function parseGoBool(raw: string | undefined): boolean {
  return raw !== undefined && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw);
}
