/**
 * What the module fuzzer found in instance reuse, shown the way a user meets it: over HTTP, on a
 * real engine process whose one worker reuses instances from call to call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { watFixture } from '../support/fixtures.js';
import { call } from '../support/http.js';

describe('instance reuse, as the fuzzer found it', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngineProcess({ args: ['--workers', '1'] });
  });

  afterAll(async () => {
    await engine?.stop();
  });

  it('a mutable float global that starts as a NaN: every call sees its initial bits, not the canonical NaN', async () => {
    const image = `file:${watFixture('hardening', 'reuse-nan-global')}`;
    for (const [name, initial] of [['bits32', '-27'], ['bits64', '9219994337134247937']] as const) {
      const deployed = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image });
      expect(deployed.status, deployed.text).toBe(200);
      const outputs: string[] = [];
      for (let i = 0; i < 4; i++) {
        const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: name }, { json: true });
        expect(answer.status, answer.text).toBe(200);
        outputs.push(answer.json.output);
      }
      expect(outputs).toEqual([initial, initial, initial, initial]);
    }
  });
});
