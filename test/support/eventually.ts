/**
 * Waits for an event the test cannot be told of directly by polling `check` every 50 ms, at most
 * `tries` times; the test fails, naming `what`, when it never holds. The bound is only a ceiling
 * for a test that would otherwise hang: nothing here measures how long the event took.
 */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i += 1) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`never happened: ${what}`);
}
