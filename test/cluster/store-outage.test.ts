/**
 * PostgreSQL stopped under invocation load (issue 11): invocation never waits on the store, so not
 * one call of a deployed function fails — through the balancer or straight to each engine; writes
 * answer 503 UNAVAILABLE naming the store, reads answer from each node's view; an engine started
 * while the database is down says so and retries; once the database is back, writes work again and
 * every node, the late one included, converges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDataDir } from '../support/engine-process.js';
import { freePort } from '../support/balancer.js';
import { watFixture } from '../support/fixtures.js';
import { call } from '../support/http.js';
import {
  CLUSTER_START_MS,
  CLUSTER_TEST_MS,
  byStatus,
  deployBody,
  invoke,
  launchEngine,
  listed,
  memberArgs,
  startCluster,
  startLoad,
  until,
  type Cluster,
  type LaunchedEngine,
} from '../support/cluster.js';

const FUNCTIONS = ['f-0', 'f-1', 'f-2', 'f-3'];

describe('PostgreSQL stopped and started again under invocation load', () => {
  let cluster: Cluster;
  let ADD: string;
  let late: LaunchedEngine | undefined;

  beforeAll(async () => {
    ADD = `file:${watFixture('cluster', 'add')}`;
    cluster = await startCluster({ nodes: 3, balancer: true });
  }, CLUSTER_START_MS);
  afterAll(async () => {
    await late?.kill();
    await cluster?.stop();
  });

  it('invocations never fail, writes get 503 naming the store, and everything converges once it is back', async () => {
    const [n0] = cluster.nodes;
    for (const name of FUNCTIONS) expect((await call(n0!.url, 'POST', '/function/deploy', deployBody(name, ADD))).status).toBe(200);
    for (const node of cluster.nodes) {
      await until(`f-* on ${node.name}`, async () => ((await listed(node.url)).length === FUNCTIONS.length ? true : undefined));
    }

    // Two clients through the balancer and one straight to each engine.
    const targets = [cluster.balancer!.url, cluster.balancer!.url, ...cluster.nodes.map((n) => n.url)];
    const load = startLoad((loop, i) => invoke(targets[loop]!, FUNCTIONS[i % FUNCTIONS.length]!, { a: 2, b: 3 }), targets.length);
    await load.more(40);

    await cluster.pg.stopServer();
    const stoppedAt = performance.now();

    // Writes, through every node and both APIs: 503 UNAVAILABLE naming the store, with Retry-After.
    for (const node of cluster.nodes) {
      const writes = [
        await call(node.url, 'POST', '/function/deploy', deployBody(`new-${node.name}`, ADD), { json: true }),
        await call(node.url, 'POST', '/function/delete', { function_name: 'f-0' }, { json: true }),
        await call(node.url, 'POST', '/system/functions', { service: `of-${node.name}`, image: ADD }, { headers: ['accept', 'application/json'] }),
        await call(node.url, 'POST', '/system/scale-function/f-1', { serviceName: 'f-1', replicas: 2 }, { headers: ['accept', 'application/json'] }),
      ];
      for (const w of writes) {
        expect(w.status, `${node.name}: ${w.text}`).toBe(503);
        expect(w.json?.error?.code, w.text).toBe('UNAVAILABLE');
        expect(w.json?.error?.message, w.text).toMatch(/store/i);
        expect(w.headers['retry-after'], w.text).toBeDefined();
      }
      // Reads answer from the node's own view.
      expect(await listed(node.url)).toEqual(FUNCTIONS);
      const status = await call(node.url, 'GET', '/system/function/f-2');
      expect(status.status, status.text).toBe(200);
    }
    const sampleRefusal = (await call(n0!.url, 'POST', '/function/deploy', deployBody('sample', ADD), { json: true })).json.error.message;

    // An engine started now says the database is unreachable and keeps trying.
    const latePort = await freePort();
    const lateDir = await makeDataDir();
    late = launchEngine(lateDir, memberArgs(cluster.store, 'node-late', latePort));
    const complaint = await late.waitForLine(/^(?=.*(store|database|postgres))(?=.*(retry|retrying|unreachable|unavailable|down|refused))/i);
    await load.more(200);
    // /readyz does not depend on the store: the balancer keeps every engine.
    expect(await cluster.balancer!.states()).toEqual({ node0: 'UP', node1: 'UP', node2: 'UP' });

    await cluster.pg.startServer();
    const restartedAt = performance.now();
    // Writes work again once the node has reconnected (with backoff): poll with the write itself;
    // until then the only acceptable refusal is 503.
    const otherRefusals: string[] = [];
    await until(
      'a deploy accepted after the database restarted',
      async () => {
        const r = await call(n0!.url, 'POST', '/function/deploy', deployBody('after', ADD));
        if (r.status === 200 || r.status === 409) return true;
        if (r.status !== 503) otherRefusals.push(`${r.status} ${r.text}`);
        return undefined;
      },
      600,
      50,
    );
    const writableAt = performance.now();
    expect(otherRefusals).toEqual([]);

    await late.waitForLine(/WasmEngine listening on/);
    const lateUrl = `http://127.0.0.1:${latePort}`;
    const expected = [...FUNCTIONS, 'after'].sort();
    for (const base of [...cluster.nodes.map((n) => n.url), lateUrl]) {
      await until(`${base} converged`, async () => {
        const names = await listed(base);
        return expected.every((n) => names.includes(n)) ? true : undefined;
      }, 600, 50);
      for (const name of expected) expect((await invoke(base, name, { a: 1, b: 2 })).json, `${name} at ${base}`).toMatchObject({ output: '3' });
    }
    const convergedAt = performance.now();
    // None of the refused writes happened.
    expect(await listed(lateUrl)).toEqual(expected);

    await load.more(40);
    const outcomes = await load.stop();
    const during = outcomes.filter((o) => o.end >= stoppedAt && o.start <= restartedAt);
    const failed = outcomes.filter((o) => o.status !== 200 || !o.text.includes('"output":"5"'));
    console.info(
      `[cluster] PostgreSQL down ${(restartedAt - stoppedAt).toFixed(0)} ms under 5-client invocation load: ` +
        `${during.length} invocations during the outage, ${outcomes.length} in all, failed ${failed.length}; ` +
        `writes refused: "${sampleRefusal}"; late node said: ${complaint}; ` +
        `database started → first write accepted ${(writableAt - restartedAt).toFixed(0)} ms; → all 4 nodes converged ${(convergedAt - restartedAt).toFixed(0)} ms`,
    );
    expect(failed, JSON.stringify(byStatus(outcomes))).toEqual([]);
    expect(during.length).toBeGreaterThanOrEqual(200);
  }, CLUSTER_TEST_MS);
});
