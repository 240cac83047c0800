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
  it('an access past the memory size the guest sees traps out of bounds, though an earlier call on the instance grew its memory', async () => {
    const image = `file:${watFixture('hardening', 'reuse-past-size')}`;
    const invoke = async (name: string, args: Record<string, string>): Promise<string> => {
      const answer = await call(engine.url, 'POST', '/function/invoke', { function_name: name, args }, { json: true });
      return answer.status === 200 ? `200 ${answer.json.output}` : `${answer.status} ${answer.json.error?.code} ${answer.json.error?.message}`;
    };
    const trapped = expect.stringMatching(/^\d+ FUNCTION_FAILED .*out-of-bounds memory access$/);
    // [grow by a page first?, where]: a call that grows and reaches the new page, then calls that
    // do not grow and reach past the one page they see.
    const cases: [string, Record<string, string>[], unknown[]][] = [
      ['load', [{ g: '1', a: '65536' }, { g: '0', a: '65536' }, { g: '0', a: '65536' }, { g: '0', a: '65535' }], ['200 0', trapped, trapped, '200 0']],
      ['store', [{ g: '1', a: '65528' }, { g: '0', a: '65528' }, { g: '0', a: '65524' }], ['200 2', trapped, '200 1']],
      ['fill', [{ g: '1', a: '65000', n: '1000' }, { g: '0', a: '65000', n: '1000' }, { g: '0', a: '65536', n: '0' }], ['200 2', trapped, '200 1']],
      ['copy', [{ g: '1', d: '0', s: '65530' }, { g: '0', d: '0', s: '65530' }, { g: '0', d: '65530', s: '0' }], ['200 2', trapped, trapped]],
    ];
    for (const [name, calls, expected] of cases) {
      const deployed = await call(engine.url, 'POST', '/function/deploy', { function_name: name, function_image: image });
      expect(deployed.status, deployed.text).toBe(200);
      const answers: string[] = [];
      for (const args of calls) answers.push(await invoke(name, args));
      expect(answers, name).toEqual(expected);
    }
  });
});
