import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { registryAnswerError, summarizeErrorBody } from '../../src/registry/registry-errors.js';
import { RegistryTransport, isLoopbackHost } from '../../src/registry/transport.js';

describe('transport policy', () => {
  const transport = new RegistryTransport({
    insecureRegistries: ['http://build.internal:5000/', 'lab.local'],
    connectTimeoutMs: 1000,
    logger: silentLogger,
  });

  it.each(['127.0.0.1:5000', '127.8.9.10', 'localhost', 'LOCALHOST:80', '[::1]:5000', '[::1]'])('%s is loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each(['128.0.0.1', '10.0.0.1:5000', 'localhost.example.com', 'example.com', '[::2]:5000'])('%s is not loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });

  it('uses HTTPS by default, plain HTTP for loopback and configured insecure registries', () => {
    expect(transport.baseUrl('ghcr.io').href).toBe('https://ghcr.io/');
    expect(transport.baseUrl('127.0.0.1:5000').href).toBe('http://127.0.0.1:5000/');
    expect(transport.baseUrl('[::1]:5000').href).toBe('http://[::1]:5000/');
    expect(transport.baseUrl('build.internal:5000').href).toBe('http://build.internal:5000/');
    expect(transport.baseUrl('build.internal:6000').href).toBe('https://build.internal:6000/'); // entry names one port
    expect(transport.baseUrl('lab.local:7000').href).toBe('http://lab.local:7000/'); // entry without port: any port
  });

  it('talks to Docker Hub on its API host', () => {
    expect(transport.baseUrl('docker.io').href).toBe('https://registry-1.docker.io/');
  });
});

describe('registry error answers', () => {
  it('summarizes distribution error bodies whatever detail holds', () => {
    for (const detail of [{ a: 1 }, 'text', [1, 2], null]) {
      const body = Buffer.from(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail }] }));
      expect(summarizeErrorBody(body)).toEqual({ codes: ['MANIFEST_UNKNOWN'], text: 'MANIFEST_UNKNOWN manifest unknown' });
    }
  });

  it('keeps plain-text bodies short and printable', () => {
    expect(summarizeErrorBody(Buffer.from('404 page not found\n'))).toEqual({ codes: [], text: '404 page not found' });
    expect(summarizeErrorBody(Buffer.from('x'.repeat(500))).text).toHaveLength(201);
    expect(summarizeErrorBody(Buffer.from('{"errors": "not an array"}')).codes).toEqual([]);
    expect(summarizeErrorBody(undefined)).toEqual({ codes: [], text: '' });
  });

  const context = { registry: '127.0.0.1:5000', repository: 'hello', what: 'image 127.0.0.1:5000/hello:v1' };

  it.each([
    [404, '404 page not found', 'IMAGE_NOT_FOUND', /image 127.0.0.1:5000\/hello:v1 not found on registry 127.0.0.1:5000 \(HTTP 404: 404 page not found\)/],
    [400, JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known' }] }), 'IMAGE_NOT_FOUND', /NAME_UNKNOWN/],
    [401, '', 'REGISTRY_AUTH_FAILED', /refused access to repository hello \(HTTP 401\)/],
    [403, JSON.stringify({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }), 'REGISTRY_AUTH_FAILED', /DENIED/],
    [429, 'slow down', 'REGISTRY_ERROR', /rate-limiting/],
    [500, '<html>oops</html>', 'REGISTRY_ERROR', /answered HTTP 500: <html>oops<\/html> for image/],
    [418, '', 'REGISTRY_ERROR', /HTTP 418/],
  ])('HTTP %i %j → %s', (status, body, code, message) => {
    const error = registryAnswerError(status, Buffer.from(body), context);
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
  });
});

describe('refusals say what was tried', () => {
  const base = { registry: 'r.example', repository: 'team/fn', what: 'image r.example/team/fn:v1' };

  it('names the user and where the credentials came from', () => {
    const error = registryAnswerError(401, Buffer.alloc(0), { ...base, credential: 'user "alice" from Docker config /h/.docker/config.json' });
    expect(error.message).toBe(
      'registry r.example refused access to repository team/fn (HTTP 401) with user "alice" from Docker config /h/.docker/config.json; check the credentials and their access to this repository',
    );
  });

  it('says where it looked when nothing was sent', () => {
    const error = registryAnswerError(403, Buffer.alloc(0), { ...base, credential: 'no credentials', sources: 'Docker config /h/.docker/config.json' });
    expect(error.message).toBe(
      'registry r.example refused access to repository team/fn (HTTP 403) with no credentials; it may not exist, or it needs credentials (none found in: Docker config /h/.docker/config.json)',
    );
  });
});
