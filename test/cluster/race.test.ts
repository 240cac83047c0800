/**
 * One name deployed through two engines at the same moment, round after round (issue 11): the
 * database settles it — exactly one deploy is acknowledged, the other is refused 409, never both
 * acknowledged — and every node then serves the winner's module, not the loser's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { watFixture } from '../support/fixtures.js';
import { call } from '../support/http.js';
import { CLUSTER_START_MS, CLUSTER_TEST_MS, deployBody, invoke, listed, startCluster, until, type Cluster } from '../support/cluster.js';

const ROUNDS = 30;

describe('the same name deployed through two nodes at once', () => {
  let cluster: Cluster;
  let V1: string;
  let V2: string;

  beforeAll(async () => {
    V1 = `file:${watFixture('ops', 'version-1')}`;
    V2 = `file:${watFixture('ops', 'version-2')}`;
    cluster = await startCluster({ nodes: 3 });
  }, CLUSTER_START_MS);
  afterAll(() => cluster?.stop());

  it(`exactly one 200 and one 409 in each of ${ROUNDS} rounds, and every node serves the winner`, async () => {
    const winners = new Map<string, string>();
    const tally = { firstWon: 0, secondWon: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      // A different pair of nodes each round; both bodies are sent before either answer is read.
      const a = cluster.nodes[round % 3]!;
      const b = cluster.nodes[(round + 1) % 3]!;
      const name = `race-${round}`;
      const [first, second] = await Promise.all([
        call(a.url, 'POST', '/function/deploy', deployBody(name, V1), { json: true }),
        call(b.url, 'POST', '/function/deploy', deployBody(name, V2), { json: true }),
      ]);
      const statuses = [first.status, second.status].sort();
      expect(statuses, `${name}: ${first.text} / ${second.text}`).toEqual([200, 409]);
      const loser = first.status === 409 ? first : second;
      expect(loser.json.error.code).toBe('FUNCTION_EXISTS');
      winners.set(name, first.status === 200 ? '1' : '2');
      if (first.status === 200) tally.firstWon += 1;
      else tally.secondWon += 1;
    }
    console.info(`[cluster] ${ROUNDS} deploy races: first node won ${tally.firstWon}, second node won ${tally.secondWon}; never both`);

    const names = [...winners.keys()].sort();
    for (const node of cluster.nodes) {
      await until(`every race name listed on ${node.name}`, async () => {
        const have = await listed(node.url);
        return names.every((n) => have.includes(n)) ? true : undefined;
      });
      for (const [name, version] of winners) {
        const r = await invoke(node.url, name);
        expect(r.json, `${name} on ${node.name}`).toMatchObject({ status: 200, output: version });
      }
    }
  }, CLUSTER_TEST_MS);

  it('the OpenFaaS deploy races the historical one the same way: one 202 or 200, one 409', async () => {
    for (let round = 0; round < 10; round++) {
      const a = cluster.nodes[round % 3]!;
      const b = cluster.nodes[(round + 2) % 3]!;
      const name = `mixed-${round}`;
      const [openfaas, historical] = await Promise.all([
        call(a.url, 'POST', '/system/functions', { service: name, image: V1 }),
        call(b.url, 'POST', '/function/deploy', deployBody(name, V2)),
      ]);
      const won = [openfaas.status === 202, historical.status === 200].filter(Boolean).length;
      expect(won, `${name}: ${openfaas.status} ${openfaas.text} / ${historical.status} ${historical.text}`).toBe(1);
      expect([openfaas.status, historical.status]).toContain(409);
    }
  }, CLUSTER_TEST_MS);
});
