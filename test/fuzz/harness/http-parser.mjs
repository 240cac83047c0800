/**
 * Random and mutated HTTP conversations, held byte for byte with three servers over one engine:
 * the engine's HTTP thread in front of its Fastify server, as the engine serves (its connection
 * reader, src/api/invoke-connection.ts, reads POST /function/invoke); the same thread with the
 * reader left out, where Node's own parser reads everything; and the Fastify server on its own.
 * Requests valid and not (bad framing, two lengths, length and chunked, bare LF, bad versions,
 * bodies too large, pipelined several to a write), split at random points. The thread with the
 * reader must write what the one without writes (the Date header left out), but for the
 * differences README allows (see runHttpParserFuzz), and leave the connection in the same state;
 * neither thread may answer 500 (an unexpected error on a request path), and all three must still
 * answer afterwards.
 */
import { connect } from 'node:net';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './dist.mjs';
import { Rng } from './prng.mjs';

const dist = (path) => import(new URL(`../../../dist/${path}`, import.meta.url).href);
const BODY_LIMIT = 2048;
const WASM = join(REPO_ROOT, 'examples', 'build', 'wasm');

class FileFetcher {
  async fetch(reference) {
    const path = reference.slice('file:'.length);
    return { bytes: new Uint8Array(readFileSync(path)), fileName: path };
  }
}

/** The engine in this process, with its two servers. */
export async function startServers() {
  const [{ buildServer }, { Engine }, { fanOut }, { silentLogger }, { FunctionLogs }, { EngineMetrics }, { WorkerPoolRuntime }, { FileFunctionStore }, { HttpThreads }] = await Promise.all([
    dist('api/server.js'), dist('core/engine.js'), dist('core/events.js'), dist('logger.js'), dist('logs/function-logs.js'),
    dist('metrics/engine-metrics.js'), dist('runtime/index.js'), dist('store/index.js'), dist('api/threads/http-threads.js'),
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'we-fuzz-http-'));
  const store = new FileFunctionStore(dir, silentLogger);
  const runtime = new WorkerPoolRuntime({ workers: 1, maxQueue: 64, logger: silentLogger });
  const logs = new FunctionLogs({ linesPerFunction: 100, namespace: 'openfaas-fn', instance: 'fuzz' });
  let engine;
  const metrics = new EngineMetrics(
    { poolStats: () => runtime.stats(), inflight: () => engine.inflightInvocations, functions: () => engine.list().length },
    { processMetrics: false },
  );
  engine = new Engine({
    store,
    fetcher: new FileFetcher(),
    runtime,
    defaults: { timeoutMs: 5000, memoryLimitMb: 64, maxOutputBytes: 1024 * 1024 },
    logger: silentLogger,
    checkImageReference: () => {},
    events: fanOut(metrics, logs),
    scaling: { concurrencyPerReplica: 4, maxWaiting: 64 },
  });
  await engine.restore();
  await engine.deploy({ name: 'gcd', image: `file:${join(WASM, 'gcd.wasm')}` });
  await engine.deploy({ name: 'echo', image: `file:${join(WASM, 'echo-string.wasm')}`, entrypoint: 'echo-string' });
  await engine.deploy({ name: 'hello', image: `file:${join(WASM, 'hello.wasm')}` });
  const platform = { metrics, logs, authInvoke: false, notReadyReason: () => undefined, version: { release: 'fuzz', sha: 'fuzz' } };
  const app = buildServer({ engine, bodyLimitBytes: BODY_LIMIT, platform });
  const threadOptions = {
    threads: 1, engine, app, bodyLimitBytes: BODY_LIMIT, inlineBudgetMs: 2, inlineHeavyUs: 0, logger: silentLogger,
    observeHttp: () => {}, registry: metrics.registry,
  };
  const withReader = new HttpThreads(threadOptions);
  const withoutReader = new HttpThreads({
    ...threadOptions,
    registry: new Registry(),
    startWorker: (data, transferList) => new Worker(new URL('../../support/http-thread-without-reader.mjs', import.meta.url), { workerData: data, transferList }),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const [reader] = await withReader.start(['127.0.0.1'], 0);
  const [plain] = await withoutReader.start(['127.0.0.1'], 0);
  return {
    ports: { reader: reader.port, plain: plain.port, fastify: app.server.address().port },
    async close() {
      for (const threads of [withReader, withoutReader]) await threads.stop(new Promise((resolve) => setTimeout(resolve, 5_000).unref()));
      await app.close();
      await runtime.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const BODIES = [
  () => '{"function_name":"gcd","args":["12","18"]}',
  () => '{"function_name":"gcd","args":{"a":"9","b":"x"}}',
  () => '{"function_name":"echo","args":{"a":"x"}}',
  () => '{"function_name":"hello"}',
  () => '{"function_name":"nope"}',
  () => '{"function_name":',
  () => '',
  () => '[]',
  () => `{"function_name":"echo","args":{"a":"${'y'.repeat(3000)}"}}`,
  () => '{"function_name":"gcd","args":["1","2"],"extra":true}',
  () => '{"function_name":"gcd","args":["\u00e9","2"]}',
];
const PATHS = ['/function/invoke', '/function/invoke', '/function/invoke', '/function/invoke?x=1', '/function/invoke/', '/function/list', '/FUNCTION/invoke', '/function/invok', '//function/invoke', '/healthz', '*', '/function/invoke#f'];
const METHODS = ['POST', 'POST', 'POST', 'POST', 'GET', 'PUT', 'post', 'HEAD', 'OPTIONS', 'DELETE'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1'];

/** One request as bytes, valid or not. */
function makeRequest(rng) {
  const body = rng.pick(BODIES)();
  const bodyBytes = Buffer.from(body, 'utf8');
  const eol = rng.chance(0.05) ? '\n' : '\r\n';
  const headers = [];
  if (!rng.chance(0.05)) headers.push('Host: 127.0.0.1');
  if (rng.chance(0.7)) headers.push(rng.pick(['Content-Type: application/json', 'Content-Type: text/plain', 'content-type: application/x-www-form-urlencoded']));
  if (rng.chance(0.3)) headers.push(rng.pick(['Accept: application/json', 'Accept: text/plain', 'accept: */*, application/json']));
  if (rng.chance(0.25)) headers.push(rng.pick(['Connection: close', 'Connection: keep-alive', 'Connection: Upgrade', 'connection: CLOSE']));
  if (rng.chance(0.05)) headers.push('Expect: 100-continue');
  if (rng.chance(0.05)) headers.push(`X-Long: ${'a'.repeat(rng.int(100, 20000))}`);
  if (rng.chance(0.03)) headers.push(' X-Folded: yes');
  if (rng.chance(0.03)) headers.push('Bad Header: yes');
  if (rng.chance(0.03)) headers.push('X-Bin: \u00ff\u0001');
  let payload = bodyBytes;
  const framing = rng.float();
  if (framing < 0.7) headers.push(`Content-Length: ${bodyBytes.length}`);
  else if (framing < 0.78) headers.push(`Content-Length: ${rng.pick([bodyBytes.length + 1, Math.max(0, bodyBytes.length - 1), 0, -1, '1e2', ' 5', '+5', '99999999999999999999'])}`);
  else if (framing < 0.83) headers.push(`Content-Length: ${bodyBytes.length}`, `Content-Length: ${rng.pick([bodyBytes.length, bodyBytes.length + 1])}`);
  else if (framing < 0.93) {
    headers.push(rng.pick(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: chunked, identity']));
    if (rng.chance(0.2)) headers.push(`Content-Length: ${bodyBytes.length}`);
    const split = rng.int(0, bodyBytes.length);
    const chunks = [bodyBytes.subarray(0, split), bodyBytes.subarray(split)].filter((c) => c.length > 0);
    const last = rng.chance(0.9) ? '0\r\n\r\n' : rng.pick(['0\r\n', 'z\r\n\r\n', '0\r\nX-Trailer: 1\r\n\r\n']);
    payload = Buffer.concat([...chunks.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')])), Buffer.from(last)]);
  } else payload = rng.chance(0.5) ? Buffer.alloc(0) : bodyBytes;
  const head = `${rng.pick(METHODS)} ${rng.pick(PATHS)} ${rng.pick(VERSIONS)}${eol}${headers.join(eol)}${eol}${eol}`;
  let bytes = Buffer.concat([Buffer.from(head, 'latin1'), payload]);
  if (rng.chance(0.05)) {
    // A byte changed, dropped or added somewhere.
    const at = rng.int(0, bytes.length - 1);
    const copy = [...bytes];
    const what = rng.int(0, 2);
    if (what === 0) copy[at] = rng.int(0, 255);
    else if (what === 1) copy.splice(at, 1);
    else copy.splice(at, 0, rng.int(0, 255));
    bytes = Buffer.from(copy);
  }
  return bytes;
}

/** A conversation: requests, the writes they are cut into, and whether the client ends its side. */
export function makeConversation(seed) {
  const rng = new Rng(seed);
  const requests = Array.from({ length: rng.chance(0.6) ? 1 : rng.int(2, 4) }, () => makeRequest(rng));
  const all = Buffer.concat(requests);
  const cuts = new Set();
  const pieces = rng.chance(0.4) ? 0 : rng.int(1, 6);
  for (let i = 0; i < pieces; i++) cuts.add(rng.int(1, Math.max(1, all.length - 1)));
  const points = [0, ...[...cuts].sort((a, b) => a - b), all.length];
  const writes = [];
  for (let i = 1; i < points.length; i++) if (points[i] > points[i - 1]) writes.push(all.subarray(points[i - 1], points[i]));
  return { writes, end: rng.chance(0.15), requests: requests.length };
}

/** How many times the thread without the reader is asked again when the two threads differ. */
const REPLAYS = 4;

const withoutDate = (text) => text.replace(/^date: .*\r\n/gim, '');

/** Holds a conversation with one server: what it wrote (latin1 text) and whether it closed. */
function converse(port, conversation, quietMs) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    let closed = false;
    let timer;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: withoutDate(received), closed });
    };
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(finish, quietMs);
    };
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      quiet();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('connect', async () => {
      for (const write of conversation.writes) {
        if (closed) break;
        socket.write(write);
        // Separate writes arrive as separate reads, mostly.
        await new Promise((r) => setTimeout(r, 2));
      }
      if (conversation.end && !closed) socket.end();
      quiet();
    });
  });
}

/**
 * The answer src/api/client-errors.ts writes when Node's parser refuses bytes (its headers in this
 * order and case, no Date), at the end of what a server wrote.
 */
const PARSE_ERROR_AT_END = /HTTP\/1\.1 (?:400|408|413|431) [^\r\n]*\r\nContent-Type: [^\r\n]*\r\nContent-Length: (\d+)\r\nConnection: close\r\n\r\n/g;
const ANSWER_HEAD = /HTTP\/1\.[01] \d{3} [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n/g;

/**
 * `text` with the parse-error answer that ends it cut to its status line: which format it takes
 * (JSON or the text line) follows an Accept header only when that header came in the read the
 * parser failed in (README, "Errors before a route runs"), and how the bytes came into reads is
 * the kernel's business.
 */
function parseErrorAsStatus(text) {
  const error = parseErrorAtEnd(text);
  return error === undefined ? text : text.slice(0, text.length - error.length) + error.slice(0, error.indexOf('\r\n'));
}

/** The parse-error answer that ends `text`, or undefined. */
function parseErrorAtEnd(text) {
  for (const match of text.matchAll(PARSE_ERROR_AT_END)) {
    const end = match.index + match[0].length + Number(match[1]);
    if (end === text.length) return text.slice(match.index);
  }
  return undefined;
}

/**
 * The one difference the two servers may show (README, "Decisions where the spec is silent",
 * "Pipelined requests before bytes Node's parser refuses"): Node's parser, failing on bytes of the
 * same read as requests before them, drops the answers of those still pending and writes only its
 * parse-error answer, where the connection reader answers them in order, then either the same
 * parse error or nothing more after an answer that closed the connection. Which requests were
 * still pending depends on how the bytes were cut into reads, so either server may be the one
 * that dropped answers: `short` is whatever came before its parse-error answer, a strict start of
 * `long`, which goes on with whole answers.
 */
export function droppedBeforeParseError(short, long) {
  const error = parseErrorAtEnd(short);
  if (error === undefined) return false;
  const before = short.slice(0, short.length - error.length);
  if (!long.startsWith(before) || long.length <= before.length) return false;
  const rest = long.slice(before.length);
  if (!rest.startsWith('HTTP/1.')) return false;
  const restError = parseErrorAtEnd(rest);
  if (restError !== undefined) return restError === error && rest !== error;
  const heads = [...rest.matchAll(ANSWER_HEAD)];
  return heads.length > 0 && /\r\nconnection: close\r\n/i.test(heads[heads.length - 1][0]);
}

/**
 * What is wrong with what the server wrote: bytes that do not start an answer, or an answer of an
 * unexpected error (500). Answers are not split by length here: those to HEAD requests announce a
 * body they do not carry.
 */
export function answerProblems(text) {
  const problems = [];
  if (text !== '' && !/^HTTP\/1\.[01] \d{3} /.test(text)) problems.push('bytes that are not an answer');
  if (/^HTTP\/1\.[01] 500 /m.test(text)) problems.push('a 500 answer');
  return problems;
}

/**
 * Every difference between the threads with and without the reader fails but two families, which
 * both the bounded and the long run count: `droppedBeforeParseError`, and answers still pending
 * when the client ended its side of the connection, which are dropped (README, "A client that ends
 * its side"), so that one side wrote a strict start of what the other wrote
 * (`droppedAtClientEnd`); a parse-error answer in the other format (`parseErrorFormat`). What the
 * reader's thread wrote is Node's own when the Fastify server wrote the same, or the thread without
 * the reader does when the conversation is held with it again: a difference of timing, not the
 * reader's (`timingDependent`). Where
 * the thread without the reader and the Fastify server differ, the
 * conversation is counted (`passedOnDiffers`): requests a thread passes on to the main thread are
 * answered later than Fastify answers them itself, and a body past the limit on another route
 * ends the connection there.
 *
 * @param {{ seeds: Iterable<number>, outDir: string, until?: number, skip?: Set<number>,
 *           log?: (line: string) => void }} options
 */
export async function runHttpParserFuzz(options) {
  const { outDir, until = Infinity, skip = new Set(), log = () => {} } = options;
  const stats = { conversations: 0, pipelined: 0, requests: 0, bytes: 0, droppedBeforeParseError: [], droppedAtClientEnd: [], passedOnDiffers: [], timingDependent: [], parseErrorFormat: [], failures: [] };
  const servers = await startServers();
  try {
    for (const seed of options.seeds) {
      if (Date.now() >= until) break;
      if (skip.has(seed)) continue;
      const conversation = makeConversation(seed);
      stats.conversations++;
      stats.bytes += conversation.writes.reduce((n, w) => n + w.length, 0);
      const [reader, plain, fastify] = await Promise.all(Object.values(servers.ports).map((port) => converse(port, conversation, 120)));
      stats.requests += (reader.text.match(/^HTTP\/1\.[01] \d{3}/gm) ?? []).length;
      if (conversation.requests > 1) stats.pipelined++;
      const problems = [...answerProblems(reader.text), ...answerProblems(plain.text)];
      /**
       * What sets `a` apart from `b`: `problems`, or the family of allowed difference it is
       * (`allowed`, a key of stats), if any.
       */
      const compare = (a, b) => {
        const found = { problems: [], allowed: undefined };
        if (a.text !== b.text) {
          if (droppedBeforeParseError(b.text, a.text) || droppedBeforeParseError(a.text, b.text)) found.allowed = 'droppedBeforeParseError';
          else if (parseErrorAsStatus(a.text) === parseErrorAsStatus(b.text)) found.allowed = 'parseErrorFormat';
          else if (conversation.end && (a.text.startsWith(b.text) || b.text.startsWith(a.text))) found.allowed = 'droppedAtClientEnd';
          else found.problems.push('wrote different bytes');
        }
        if (a.closed !== b.closed) found.problems.push(`${a.closed ? 'closed' : 'kept'} the connection where the other ${b.closed ? 'closed' : 'kept'} it`);
        return found;
      };
      let verdict = compare(reader, plain);
      // Answers passed on to the main thread come back when they come: where they meet a 100
      // Continue or a parse error of the same read, their order can differ from one holding of
      // the conversation to the next, without the reader in front too. A difference counts as the
      // reader's only when neither the Fastify server nor the thread without the reader, held
      // again, writes what the reader's thread wrote.
      const timing = { problems: [], allowed: 'timingDependent' };
      if (verdict.problems.length > 0 && compare(reader, fastify).problems.length === 0) verdict = timing;
      for (let again = 0; verdict.problems.length > 0 && again < REPLAYS; again++) {
        if (compare(reader, await converse(servers.ports.plain, conversation, 120)).problems.length === 0) verdict = timing;
      }
      if (verdict.allowed !== undefined) stats[verdict.allowed].push(seed);
      problems.push(...verdict.problems.map((d) => `the thread with the reader ${d}`));
      // Counted, not failed: what passing a request on to the main thread changes (README, "HTTP threads").
      if (compare(plain, fastify).problems.length > 0) stats.passedOnDiffers.push(seed);
      if (stats.conversations % 10 === 0 || problems.length > 0) {
        for (const [name, port] of Object.entries(servers.ports)) {
          const health = await converse(port, { writes: [Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')], end: false }, 2000);
          if (!/^HTTP\/1\.1 200 /.test(health.text)) problems.push(`the ${name} server does not answer /healthz any more`);
        }
      }
      if (problems.length > 0) {
        mkdirSync(outDir, { recursive: true });
        const base = join(outDir, `http-${seed}`);
        writeFileSync(`${base}.bin`, Buffer.concat(conversation.writes));
        writeFileSync(`${base}.json`, JSON.stringify({
          seed, problems,
          writes: conversation.writes.map((w) => w.toString('latin1')),
          end: conversation.end,
          reader, plain, fastify,
          replay: `npm run fuzz -- --only http --case ${seed}`,
        }, null, 2));
        stats.failures.push({ seed, problems, files: [`${base}.bin`, `${base}.json`] });
        log(`http case ${seed}: ${problems.join('; ')} (reproduction in ${base}.json)`);
      }
    }
  } finally {
    await servers.close();
  }
  return stats;
}
