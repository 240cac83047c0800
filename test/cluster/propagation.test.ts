/**
 * Three engines on one PostgreSQL store behind haproxy (issue 11): a change made through any node,
 * by any API, is served by every node and through the balancer. The deploy-answered →
 * invokable-everywhere delay is measured and printed, never asserted.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/engine-process.js';
import { cFixture, watFixture } from '../support/fixtures.js';
import { call } from '../support/http.js';
import { CLUSTER_START_MS, CLUSTER_TEST_MS, deployBody, invoke, listed, startCluster, until, type Cluster } from '../support/cluster.js';

const run = promisify(execFile);

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('a cluster of three engines sharing a PostgreSQL store, behind haproxy', () => {
  let cluster: Cluster;
  let ADD: string;
  let V1: string;
  let V2: string;
  let GREET: string;
  let everywhere: string[];

  beforeAll(async () => {
    ADD = `file:${watFixture('cluster', 'add')}`;
    V1 = `file:${watFixture('ops', 'version-1')}`;
    V2 = `file:${watFixture('ops', 'version-2')}`;
    GREET = `file:${cFixture('cluster', 'greet')}`;
    cluster = await startCluster({ nodes: 3, balancer: true });
    everywhere = [...cluster.nodes.map((n) => n.url), cluster.balancer!.url];
  }, CLUSTER_START_MS);
  afterAll(() => cluster?.stop());

  it('a deploy answered by one node is invokable through every node and the balancer (delay printed)', async () => {
    const delays: number[] = [];
    for (let trial = 0; trial < 6; trial++) {
      const via = cluster.nodes[trial % 3]!;
      const name = `sum-${trial}`;
      const deployed = await call(via.url, 'POST', '/function/deploy', deployBody(name, ADD));
      expect(deployed.status, deployed.text).toBe(200);
      const answered = performance.now();
      // Every other node polls its own invoke until it answers; the slowest one is the delay.
      const reached = await Promise.all(
        cluster.nodes
          .filter((n) => n !== via)
          .map((n) =>
            until(`${name} on ${n.name}`, async () => {
              const r = await invoke(n.url, name, { a: 2, b: 3 });
              return r.status === 200 ? performance.now() : undefined;
            }, 3000, 2),
          ),
      );
      delays.push(Math.max(...reached) - answered);
    }
    console.info(
      `[cluster] deploy answered → invokable on every node: ${delays.map((d) => d.toFixed(1)).join(', ')} ms ` +
        `(median ${median(delays).toFixed(1)} ms, max ${Math.max(...delays).toFixed(1)} ms; shared 2-core machine)`,
    );

    for (const base of everywhere) {
      const historical = await invoke(base, 'sum-0', { a: 20, b: 22 });
      expect(historical.json, `${base} historical`).toMatchObject({ status: 200, output: '42' });
      const raw = await call(base, 'GET', '/function/sum-1?a=12&b=30');
      expect({ status: raw.status, text: raw.text }, `${base} OpenFaaS`).toEqual({ status: 200, text: '42' });
    }
    for (const node of cluster.nodes) expect(await listed(node.url)).toEqual(['sum-0', 'sum-1', 'sum-2', 'sum-3', 'sum-4', 'sum-5']);
  }, CLUSTER_TEST_MS);

  it('OpenFaaS deploy, update, scale and delete through different nodes reach every node', async () => {
    const [a, b, c] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0], Cluster['nodes'][0]];
    const created = await call(a.url, 'POST', '/system/functions', { service: 'ver', image: V1 });
    expect(created.status, created.text).toBe(202);
    const answers = (expected: string) =>
      Promise.all(
        everywhere.map((base) =>
          until(`ver answering ${expected} at ${base}`, async () => {
            const r = await call(base, 'GET', '/function/ver');
            return r.status === 200 && r.text === expected ? true : undefined;
          }),
        ),
      );
    await answers('1');

    const updated = await call(b.url, 'PUT', '/system/functions', { service: 'ver', image: V2 });
    expect(updated.status, updated.text).toBe(200);
    await answers('2');

    const scaled = await call(c.url, 'POST', '/system/scale-function/ver', { serviceName: 'ver', replicas: 3 });
    expect(scaled.status, scaled.text).toBe(202);
    for (const node of cluster.nodes) {
      await until(`replicas 3 on ${node.name}`, async () => {
        const r = await call(node.url, 'GET', '/system/function/ver');
        return r.json?.replicas === 3 ? true : undefined;
      });
    }

    const deleted = await call(b.url, 'DELETE', '/system/functions', { functionName: 'ver' });
    expect(deleted.status, deleted.text).toBe(200);
    for (const base of everywhere) {
      await until(`ver gone at ${base}`, async () => ((await invoke(base, 'ver')).status === 404 ? true : undefined));
    }
    for (const node of cluster.nodes) expect(await listed(node.url)).not.toContain('ver');
  }, CLUSTER_TEST_MS);

  it('the CLI deploys, lists and invokes through the balancer and any node', async () => {
    const lb = cluster.balancer!.url;
    const deployed = await cli('deploy', 'greet', GREET, '--wasi', '--url', lb);
    expect(deployed, deployed.stderr).toMatchObject({ code: 0, stdout: 'deploy function greet successfully!\n' });
    for (const node of cluster.nodes) {
      await until(`greet listed on ${node.name}`, async () => ((await listed(node.url)).includes('greet') ? true : undefined));
    }
    const list = await cli('list', '--url', cluster.nodes[2]!.url);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^greet\s+\S+\s+true\s/m);
    const invoked = await cli('invoke', 'greet', 'who=cli', '--url', lb);
    expect(invoked).toMatchObject({ code: 0, stdout: 'hello, {"who":"cli"}\n' });
    // The C function on the OpenFaaS raw route of every node: the body is its stdin.
    for (const base of everywhere) {
      const raw = await call(base, 'POST', '/function/greet', undefined, { raw: 'cluster', headers: ['content-type', 'text/plain'] });
      expect({ status: raw.status, text: raw.text }, base).toEqual({ status: 200, text: 'hello, cluster' });
    }
  }, CLUSTER_TEST_MS);

  it('each node names itself in /system/info; invocationCount is the cluster’s', async () => {
    for (const node of cluster.nodes) {
      const info = await call(node.url, 'GET', '/system/info');
      expect(info.text, node.name).toContain(node.name);
    }
    const deployed = await call(cluster.nodes[0]!.url, 'POST', '/function/deploy', deployBody('counted', ADD));
    expect(deployed.status, deployed.text).toBe(200);
    let total = 0;
    for (const node of cluster.nodes) {
      await until(`counted on ${node.name}`, async () => ((await invoke(node.url, 'counted', { a: 1, b: 1 })).status === 200 ? true : undefined));
      total += 1;
      for (let i = 0; i < 2; i++) {
        expect((await invoke(node.url, 'counted', { a: 1, b: 1 })).status).toBe(200);
        total += 1;
      }
    }
    // Each node adds its counts to the store periodically: poll until every node shows the total.
    for (const node of cluster.nodes) {
      await until(
        `invocationCount ${total} on ${node.name}`,
        async () => {
          const r = await call(node.url, 'GET', '/system/function/counted');
          return r.json?.invocationCount === total ? true : undefined;
        },
        600,
        50,
      );
    }
  }, CLUSTER_TEST_MS);
});
