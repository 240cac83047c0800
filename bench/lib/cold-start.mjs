// Part 3: cold start of a real engine process. Per trial, on a fresh data directory: deploy
// answered → first invocation answered; then kill -9 and restart on the same data directory →
// first invocation answered (the function is restored but not yet loaded: the engine compiles
// restored functions in the background from the moment it listens, and the invocation waits for
// that), measured both from "listening" and from the process spawn. Medians over the trials.
import { rmSync } from 'node:fs';
import { deploy, invoke, kill, startEngine, tempDir } from './processes.mjs';
import { median } from './stats.mjs';

export async function coldStart({ name, image, args, trials, entrypoint }) {
  const deployToInvoke = [];
  const listenToInvoke = [];
  const spawnToInvoke = [];
  for (let i = 0; i < trials; i++) {
    const dataDir = tempDir('we-bench-cold-');
    let engine = await startEngine(dataDir);
    try {
      await deploy(engine.url, name, image, entrypoint ? { entrypoint } : {});
      const deployed = performance.now();
      await invoke(engine.url, name, args);
      deployToInvoke.push(performance.now() - deployed);
      await kill(engine.child);
      engine = await startEngine(dataDir);
      await invoke(engine.url, name, args);
      const answered = performance.now();
      listenToInvoke.push(answered - engine.listening);
      spawnToInvoke.push(answered - engine.spawned);
    } finally {
      await kill(engine.child);
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  return { deploy: median(deployToInvoke), listen: median(listenToInvoke), spawn: median(spawnToInvoke), trials };
}
