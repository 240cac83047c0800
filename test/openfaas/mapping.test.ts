import { describe, expect, it } from 'vitest';
import { ANNOTATION, deployRequestOf, functionStatusOf, memoryMegabytes } from '../../src/api/openfaas/mapping.js';
import type { FunctionRecord } from '../../src/store/index.js';

describe('memoryMegabytes', () => {
  it.each([
    ['128Mi', 128],
    ['1Gi', 1024],
    ['100M', 96],
    ['134217728', 128],
    ['1', 1],
    ['1.5Gi', 1536],
    ['1e9', 954],
    ['64Ki', 1],
  ])('%s → %i MiB', (quantity, mb) => {
    expect(memoryMegabytes(quantity)).toBe(mb);
  });

  it.each(['lots', '128MB', '-1Mi', '10m'])('refuses %s naming limits.memory', (quantity) => {
    expect(() => memoryMegabytes(quantity)).toThrow(/limits\.memory/);
  });
});

describe('deployRequestOf', () => {
  it('honours service, image, envVars, labels, annotations, limits.memory and the engine annotations', () => {
    const request = deployRequestOf(
      {
        service: 'echo',
        image: 'ghcr.io/acme/echo:1',
        namespace: 'openfaas-fn',
        envProcess: 'ignored',
        envVars: { GREETING: 'hi' },
        constraints: ['node.platform.os == linux'],
        secrets: ['s1'],
        labels: { team: 'a', 'com.openfaas.scale.min': '3' },
        annotations: {
          [ANNOTATION.wasiCap]: 'true',
          [ANNOTATION.timeoutMs]: '2500',
          [ANNOTATION.maxOutputBytes]: '1000',
          [ANNOTATION.entrypoint]: 'run',
          topic: 'x',
        },
        limits: { memory: '64Mi', cpu: '100m' },
        requests: { memory: '32Mi' },
        readOnlyRootFilesystem: true,
      },
      'deploy',
    );
    expect(request).toEqual({
      name: 'echo',
      image: 'ghcr.io/acme/echo:1',
      wasiCap: true,
      entrypoint: 'run',
      limits: { timeout_ms: 2500, max_output_bytes: 1000, memory_limit_mb: 64 },
      env: { GREETING: 'hi' },
      labels: { team: 'a', 'com.openfaas.scale.min': '3' },
      annotations: expect.objectContaining({ topic: 'x' }),
      replicas: 3,
    });
  });

  it('takes nulls as absent, as Go writes nil maps', () => {
    const request = deployRequestOf({ service: 'f', image: 'i', envVars: null, labels: null, annotations: null, limits: null }, 'update');
    expect(request).toEqual({ name: 'f', image: 'i', limits: {}, env: {}, labels: {}, annotations: {} });
  });

  it('an update keeps the current scale: scale.min applies to a new deploy only', () => {
    expect(deployRequestOf({ service: 'f', image: 'i', labels: { 'com.openfaas.scale.min': '2' } }, 'update').replicas).toBeUndefined();
  });

  it.each([
    [{ namespace: 'other' }, /namespace/],
    [{ annotations: { [ANNOTATION.wasiCap]: 'yes' } }, /com\.wasmengine\.wasi_cap/],
    [{ annotations: { [ANNOTATION.timeoutMs]: '1s' } }, /com\.wasmengine\.timeout_ms/],
    [{ labels: { 'com.openfaas.scale.min': 'many' } }, /com\.openfaas\.scale\.min/],
  ])('refuses %o naming the field', (extra, message) => {
    expect(() => deployRequestOf({ service: 'f', image: 'i', ...extra }, 'deploy')).toThrow(message);
  });
});

describe('functionStatusOf', () => {
  const record: FunctionRecord = {
    name: 'f',
    image: 'img:1',
    digest: `sha256:${'0'.repeat(64)}`,
    size: 10,
    deployedAt: '2024-01-02T03:04:05.000Z',
    analysis: { abi: 'wasi', entrypoint: '_start', exports: ['_start'], wasiCap: true },
    limits: { memory_limit_mb: 64 },
    env: { A: 'b' },
    labels: { l: '1' },
    annotations: { a: '2' },
  };

  it('gives the FunctionStatus fields', () => {
    expect(functionStatusOf({ record, replicas: 2, availableReplicas: 2, invocations: 7 })).toEqual({
      name: 'f',
      image: 'img:1',
      namespace: 'openfaas-fn',
      envVars: { A: 'b' },
      labels: { l: '1' },
      annotations: { a: '2' },
      limits: { memory: '64Mi' },
      invocationCount: 7,
      replicas: 2,
      availableReplicas: 2,
      createdAt: '2024-01-02T03:04:05.000Z',
    });
  });

  it('leaves out what is empty, as omitempty does', () => {
    const bare = { ...record, env: {}, limits: {} } as FunctionRecord;
    delete bare.labels;
    delete bare.annotations;
    expect(Object.keys(functionStatusOf({ record: bare, replicas: 1, availableReplicas: 0, invocations: 0 })).sort()).toEqual(
      ['availableReplicas', 'createdAt', 'image', 'invocationCount', 'name', 'namespace', 'replicas'],
    );
  });
});
