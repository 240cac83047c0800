/**
 * The function store in PostgreSQL, shared by any number of engine nodes. The database holds the
 * entries and the module bytes by digest and settles every race (a primary key per name, row locks
 * for changes); each node keeps a view of the entries in memory, which is what list(), get() and so
 * every invocation read: nothing on the invocation path waits for the database.
 *
 * A committed change is announced with NOTIFY in its own transaction (so it is sent on commit and
 * only then); every node LISTENs, fetches the named entries and passes the change to its engine.
 * A node resynchronises completely when it (re)connects and every RESYNC_MS, so a notification
 * missed while disconnected never leaves it stale. A change is answered only once committed.
 * The data directory holds verified local copies of module bytes by digest (local-blobs.ts).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { EngineError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { sha256DigestSliced } from '../blob-store.js';
import type { ClusterStore, FunctionChange, FunctionRecord, FunctionStore } from '../types.js';
import { LocalBlobCache } from './local-blobs.js';
import { migrate } from './migrations.js';
import { NameReservations } from '../name-reservations.js';

/** The channel every node listens on; payload: {"name": …, "instance": …}. */
export const CHANGES_CHANNEL = 'wasm_engine_changes';

export interface PostgresStoreTimings {
  /** The periodic full resynchronisation, the safety net under LISTEN/NOTIFY. */
  resyncMs: number;
  /** How often this node adds its invocation counts to the database and reads the cluster's. */
  countsMs: number;
  /** Reconnection backoff: first wait, doubled after each failure up to the last. */
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

export const DEFAULT_TIMINGS: PostgresStoreTimings = { resyncMs: 10_000, countsMs: 2_000, reconnectMinMs: 250, reconnectMaxMs: 5_000 };

/** Connections a node opens for queries (the listener has one more of its own). */
export const POOL_SIZE = 4;

export interface PostgresStoreOptions {
  /** postgresql://user:password@host:port/database */
  url: string;
  dataDir: string;
  node: string;
  /** Every statement's limit, and the connection timeout. */
  timeoutMs: number;
  logger: Logger;
  timings?: Partial<PostgresStoreTimings>;
}

interface FunctionRow {
  name: string;
  record: FunctionRecord;
  revision: string;
}

/** The URL without its credentials: what messages and logs may show. */
export function storeLabel(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgresql';
  }
}

export class PostgresFunctionStore implements FunctionStore, ClusterStore {
  readonly node: string;
  readonly cluster: ClusterStore = this;
  private readonly label: string;
  private readonly logger: Logger;
  private readonly timings: PostgresStoreTimings;
  private readonly timeoutMs: number;
  private readonly clientConfig: pg.ClientConfig;
  private readonly pool: pg.Pool;
  private readonly blobs: LocalBlobCache;
  /** Tells this process's own notifications from other nodes' (two engines may share a node name). */
  private readonly instance = randomUUID();

  /** The view: entries and their revisions as last read from (or written to) the database. */
  private readonly records = new Map<string, FunctionRecord>();
  private readonly revisions = new Map<string, string>();
  private readonly reserved = new NameReservations();
  /** Names this node is changing right now: a sync leaves them to the change's own apply. */
  private readonly ownWrites = new Map<string, number>();
  /** Every change to the view runs here, one at a time, in order. */
  private applying: Promise<void> = Promise.resolve();
  /** Names other nodes announced, fetched together by the next apply. */
  private readonly dirty = new Set<string>();
  private dirtyScheduled = false;
  private listeners: ((change: FunctionChange) => void)[] = [];

  private listener: pg.Client | undefined;
  /** Why the store cannot be reached now; undefined while it can. */
  private unreachable: string | undefined = 'not connected yet';
  private reconnecting = false;
  private closed = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private wakeUp: (() => void) | undefined;

  private localCounts: () => ReadonlyMap<string, number> = () => new Map();
  /** Per function: this node's count already added to the database, and the cluster's total as last read. */
  private readonly sent = new Map<string, number>();
  private totals = new Map<string, { total: number; mine: number }>();
  private counting = false;

  constructor(options: PostgresStoreOptions) {
    this.node = options.node;
    this.label = storeLabel(options.url);
    this.logger = options.logger;
    this.timings = { ...DEFAULT_TIMINGS, ...options.timings };
    this.timeoutMs = options.timeoutMs;
    this.clientConfig = {
      connectionString: options.url,
      connectionTimeoutMillis: options.timeoutMs,
      statement_timeout: options.timeoutMs,
      // A server that stops answering without closing the connection: the client gives up too.
      query_timeout: options.timeoutMs + 1_000,
      idle_in_transaction_session_timeout: options.timeoutMs * 2,
      keepAlive: true,
      application_name: `wasm-engine ${options.node}`.slice(0, 63),
    };
    this.pool = new pg.Pool({ ...this.clientConfig, max: POOL_SIZE, idleTimeoutMillis: 30_000 });
    // An idle connection the server dropped: the pool discards it; without a handler Node would exit.
    this.pool.on('error', (err) => this.logger.debug({ err: err.message }, 'an idle store connection closed'));
    this.blobs = new LocalBlobCache(options.dataDir);
  }

  // ---- start and connection ----

  /**
   * Migrates the schema and reads every entry. While the database cannot be reached it logs that it
   * waits for it and retries with backoff (the engine does not listen meanwhile); any other failure
   * (a schema newer than this engine's, bad credentials) is thrown.
   */
  async open(): Promise<void> {
    await this.blobs.init();
    let delay = this.timings.reconnectMinMs;
    for (;;) {
      if (this.closed) throw new EngineError('UNAVAILABLE', `the engine stopped while waiting for the function store ${this.label}`);
      try {
        const client = await this.pool.connect();
        try {
          const { from, to } = await migrate(client, `${this.node} (${this.instance})`);
          if (from !== to) this.logger.info({ store: this.label, from, to }, `migrated the store's schema from version ${from} to ${to}`);
        } finally {
          client.release();
        }
        await this.connectListener();
        await this.enqueue(() => this.fullSync(false));
        break;
      } catch (err) {
        if (!isConnectionError(err)) throw this.translate(err);
        this.unreachable = reasonOf(err);
        this.logger.warn(
          { store: this.label, reason: this.unreachable, retryInMs: delay },
          `waiting for the function store ${this.label}: ${this.unreachable}; retrying in ${delay} ms`,
        );
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.timings.reconnectMaxMs);
      }
    }
    this.logger.info({ store: this.label, functions: this.records.size }, `connected to the function store ${this.label}`);
    this.timers.push(setInterval(() => void this.resync(), this.timings.resyncMs).unref());
    this.timers.push(setInterval(() => void this.syncCounts(), this.timings.countsMs).unref());
  }

  private async connectListener(): Promise<void> {
    const client = new pg.Client(this.clientConfig);
    const lost = (err?: Error): void => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      this.lost(err ? reasonOf(err) : 'the connection closed');
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (message) => this.heard(message.payload));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw err;
    }
    this.listener = client;
    this.unreachable = undefined;
  }

  /** The store is unreachable: writes are refused at once, and the node reconnects with backoff. */
  private lost(reason: string): void {
    if (this.closed) return;
    if (this.unreachable === undefined) {
      this.logger.warn({ store: this.label, reason }, `lost the function store ${this.label}: ${reason}; invocations go on, changes are refused until it is back`);
    }
    this.unreachable = reason;
    if (this.listener) {
      const client = this.listener;
      this.listener = undefined;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
    }
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    let delay = this.timings.reconnectMinMs;
    try {
      while (!this.closed) {
        await this.sleep(delay);
        if (this.closed) return;
        try {
          await this.connectListener();
          await this.enqueue(() => this.fullSync(true));
          this.logger.info({ store: this.label }, `the function store ${this.label} is reachable again; resynchronised`);
          return;
        } catch (err) {
          this.unreachable = reasonOf(err);
          if (this.listener) {
            const client = this.listener;
            this.listener = undefined;
            await client.end().catch(() => undefined);
          }
          delay = Math.min(delay * 2, this.timings.reconnectMaxMs);
          this.logger.debug({ store: this.label, reason: this.unreachable, retryInMs: delay }, 'function store still unreachable');
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        resolve();
      };
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeUp?.();
    for (const timer of this.timers) clearInterval(timer);
    await this.syncCounts().catch(() => undefined);
    const listener = this.listener;
    this.listener = undefined;
    if (listener) await listener.end().catch(() => undefined);
    await this.applying.catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  // ---- the view ----

  list(): FunctionRecord[] {
    return [...this.records.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): FunctionRecord | undefined {
    return this.records.get(name);
  }

  onChange(listener: (change: FunctionChange) => void): void {
    this.listeners.push(listener);
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.applying.then(task, task);
    this.applying = run.catch(() => undefined);
    return run;
  }

  private heard(payload: string | undefined): void {
    let message: { name?: unknown; instance?: unknown };
    try {
      message = JSON.parse(payload ?? '') as typeof message;
    } catch {
      return;
    }
    if (message.instance === this.instance || typeof message.name !== 'string') return;
    this.markDirty(message.name);
  }

  /** Reads `name`'s entry again soon (with any other names marked meanwhile) and applies it. */
  private markDirty(name: string): void {
    this.dirty.add(name);
    if (this.dirtyScheduled) return;
    this.dirtyScheduled = true;
    void this.enqueue(async () => {
      this.dirtyScheduled = false;
      const names = [...this.dirty];
      this.dirty.clear();
      try {
        await this.fetchAndApply(names);
      } catch (err) {
        // The next resync (on reconnect, or periodic) reads them again.
        this.logger.warn({ store: this.label, err: reasonOf(err), functions: names }, 'could not read announced changes; the next resync will');
      }
    });
  }

  private async fetchAndApply(names: string[]): Promise<void> {
    const { rows } = await this.pool.query<FunctionRow>('SELECT name, record, revision FROM wasm_functions WHERE name = ANY($1)', [names]);
    const found = new Map(rows.map((row) => [row.name, row]));
    for (const name of names) {
      const row = found.get(name);
      this.applyRow(name, row, true);
    }
  }

  /** Reads every entry's revision, then the entries that differ from the view. */
  private async fullSync(emit: boolean): Promise<void> {
    const { rows } = await this.pool.query<{ name: string; revision: string }>('SELECT name, revision FROM wasm_functions');
    const stored = new Map(rows.map((row) => [row.name, row.revision]));
    const changed = rows.filter((row) => this.revisions.get(row.name) !== row.revision).map((row) => row.name);
    if (changed.length > 0) {
      const fetched = await this.pool.query<FunctionRow>('SELECT name, record, revision FROM wasm_functions WHERE name = ANY($1)', [changed]);
      for (const row of fetched.rows) this.applyRow(row.name, row, emit);
    }
    for (const name of [...this.records.keys()]) {
      if (!stored.has(name)) this.applyRow(name, undefined, emit);
    }
    await this.blobs.prune(new Set([...this.records.values()].map((r) => r.digest)), 60 * 60 * 1000).catch(() => 0);
    await this.sweepBlobs();
  }

  /**
   * Removes the blobs no entry names: those a failed removal left (dropBlobIfUnused). A deploy's
   * blob is safe: uncommitted, it is invisible here; committed, its entry names it; and a blob an
   * uncommitted entry is about to name is kept by the foreign key's check (23503, as there).
   */
  private async sweepBlobs(): Promise<void> {
    try {
      const swept = await this.pool.query('DELETE FROM wasm_blobs b WHERE NOT EXISTS (SELECT 1 FROM wasm_functions f WHERE f.digest = b.digest)');
      if ((swept.rowCount ?? 0) > 0) this.logger.info({ store: this.label, blobs: swept.rowCount }, 'removed blobs no function names');
    } catch (err) {
      if ((err as { code?: unknown }).code !== '23503') this.logger.warn({ store: this.label, err: reasonOf(err) }, 'could not sweep unused blobs');
    }
  }

  private async resync(): Promise<void> {
    if (this.closed || this.unreachable !== undefined) return;
    try {
      await this.enqueue(() => this.fullSync(true));
    } catch (err) {
      if (isConnectionError(err)) this.lost(reasonOf(err));
      else this.logger.warn({ store: this.label, err: reasonOf(err) }, 'periodic resync failed');
    }
  }

  /** Makes the view hold `row` (or no entry) for `name`, and tells the engine when asked to. */
  private applyRow(name: string, row: FunctionRow | undefined, emit: boolean): void {
    if (this.ownWrites.has(name)) return;
    const previous = this.records.get(name);
    if (row === undefined) {
      if (previous === undefined) return;
      this.records.delete(name);
      this.revisions.delete(name);
      this.sent.delete(name);
    } else {
      if (this.revisions.get(name) === row.revision) return;
      this.records.set(name, row.record);
      this.revisions.set(name, row.revision);
    }
    if (emit) this.emit({ name, previous, current: row?.record });
  }

  private emit(change: FunctionChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.logger.error({ err, function: change.name }, 'applying a change from the store failed');
      }
    }
  }

  // ---- changes ----

  checkWritable(): void {
    if (this.closed) throw new EngineError('UNAVAILABLE', 'the engine is shutting down', { retryAfterSeconds: 1 });
    if (this.unreachable !== undefined) throw this.unavailable(this.unreachable);
  }

  reserve(name: string): () => void {
    return this.reserved.reserve(name, this.records.has(name), () => this.checkWritable());
  }

  async insert(record: FunctionRecord, bytes: Uint8Array): Promise<void> {
    await this.blobs.put(record.digest, bytes);
    await this.change(record.name, async (client) => {
      await this.putBlob(client, record.digest, bytes);
      const { rows } = await client.query<{ revision: string }>(
        `INSERT INTO wasm_functions (name, digest, record, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING RETURNING revision`,
        [record.name, record.digest, record, this.node],
      );
      if (rows.length === 0) throw new EngineError('FUNCTION_EXISTS', `function ${record.name} is already deployed`);
      return { revision: rows[0]!.revision, current: record };
    });
  }

  async replace(record: FunctionRecord, bytes?: Uint8Array): Promise<FunctionRecord> {
    if (bytes !== undefined) await this.blobs.put(record.digest, bytes);
    let old: FunctionRecord | undefined;
    await this.change(record.name, async (client) => {
      old = await this.lockEntry(client, record.name);
      if (bytes !== undefined) await this.putBlob(client, record.digest, bytes);
      return { revision: await this.updateEntry(client, record), current: record };
    });
    if (old!.digest !== record.digest) await this.dropBlobIfUnused(old!.digest);
    return old!;
  }

  async setReplicas(name: string, replicas: number): Promise<FunctionRecord> {
    let updated: FunctionRecord | undefined;
    await this.change(name, async (client) => {
      const current = await this.lockEntry(client, name);
      updated = { ...current };
      if (replicas === 1) delete updated.replicas;
      else updated.replicas = replicas;
      return { revision: await this.updateEntry(client, updated), current: updated };
    });
    return updated!;
  }

  async remove(name: string): Promise<FunctionRecord> {
    let old: FunctionRecord | undefined;
    await this.change(name, async (client) => {
      const { rows } = await client.query<{ record: FunctionRecord }>('DELETE FROM wasm_functions WHERE name = $1 RETURNING record', [name]);
      if (rows.length === 0) throw new EngineError('FUNCTION_NOT_FOUND', `function ${name} is not deployed`);
      old = rows[0]!.record;
      return { revision: undefined, current: undefined };
    });
    this.sent.delete(name);
    await this.dropBlobIfUnused(old!.digest);
    return old!;
  }

  /**
   * One change of one entry, in a transaction that announces it; once committed, the view takes
   * it (in the order of every other change to the view) before the caller is answered.
   */
  private async change(
    name: string,
    work: (client: pg.PoolClient) => Promise<{ revision: string | undefined; current: FunctionRecord | undefined }>,
  ): Promise<void> {
    this.checkWritable();
    this.ownWrites.set(name, (this.ownWrites.get(name) ?? 0) + 1);
    let failed = false;
    try {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (err) {
        throw this.translate(err);
      }
      let outcome: { revision: string | undefined; current: FunctionRecord | undefined };
      try {
        await client.query('BEGIN');
        outcome = await work(client);
        await client.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, JSON.stringify({ name, instance: this.instance, node: this.node })]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release(isConnectionError(err) ? (err as Error) : undefined);
        // Committed or not, a connection lost at COMMIT is told by the next resync.
        throw this.translate(err);
      }
      client.release();
      const { revision, current } = outcome;
      await this.enqueue(async () => {
        const previous = this.records.get(name);
        if (current === undefined) {
          if (previous !== undefined) {
            this.records.delete(name);
            this.revisions.delete(name);
          }
        } else {
          this.records.set(name, current);
          this.revisions.set(name, revision!);
        }
      });
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      const left = (this.ownWrites.get(name) ?? 1) - 1;
      if (left === 0) this.ownWrites.delete(name);
      else this.ownWrites.set(name, left);
      // Announcements of this name heard meanwhile were left to this change: it failed (another
      // node won the name, or the outcome is unknown), so the view reads the entry again.
      if (failed) this.markDirty(name);
    }
  }

  private async lockEntry(client: pg.PoolClient, name: string): Promise<FunctionRecord> {
    const { rows } = await client.query<{ record: FunctionRecord }>('SELECT record FROM wasm_functions WHERE name = $1 FOR UPDATE', [name]);
    if (rows.length === 0) throw new EngineError('FUNCTION_NOT_FOUND', `function ${name} is not deployed`);
    return rows[0]!.record;
  }

  private async updateEntry(client: pg.PoolClient, record: FunctionRecord): Promise<string> {
    const { rows } = await client.query<{ revision: string }>(
      `UPDATE wasm_functions SET digest = $2, record = $3, revision = nextval('wasm_function_revision'), updated_at = now(), updated_by = $4
       WHERE name = $1 RETURNING revision`,
      [record.name, record.digest, record, this.node],
    );
    return rows[0]!.revision;
  }

  /** Stores the bytes unless present; either way the blob's row is locked against removal until commit. */
  private async putBlob(client: pg.PoolClient, digest: string, bytes: Uint8Array): Promise<void> {
    const present = await client.query('SELECT 1 FROM wasm_blobs WHERE digest = $1 FOR KEY SHARE', [digest]);
    if (present.rowCount !== 0) return;
    await client.query(
      `INSERT INTO wasm_blobs (digest, size, bytes) VALUES ($1, $2, $3)
       ON CONFLICT (digest) DO UPDATE SET size = EXCLUDED.size`,
      [digest, bytes.byteLength, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)],
    );
  }

  /** Removes a blob no entry names any more; a failure leaves a row the next full sync sweeps (sweepBlobs). */
  private async dropBlobIfUnused(digest: string): Promise<void> {
    try {
      await this.pool.query(
        'DELETE FROM wasm_blobs b WHERE b.digest = $1 AND NOT EXISTS (SELECT 1 FROM wasm_functions f WHERE f.digest = $1)',
        [digest],
      );
    } catch (err) {
      // 23503: another node stored an entry naming it meanwhile; it stays, rightly.
      if ((err as { code?: unknown }).code !== '23503') this.logger.warn({ store: this.label, digest, err: reasonOf(err) }, 'could not remove an unused blob');
    }
  }

  // ---- blobs ----

  async readBlob(digest: string): Promise<Uint8Array> {
    const local = await this.blobs.get(digest);
    if (local) return local;
    let rows: { bytes: Buffer }[];
    try {
      ({ rows } = await this.pool.query<{ bytes: Buffer }>('SELECT bytes FROM wasm_blobs WHERE digest = $1', [digest]));
    } catch (err) {
      throw this.translate(err);
    }
    if (rows.length === 0) throw new EngineError('INTERNAL', `no stored blob ${digest} in the function store ${this.label}`);
    const buffer = rows[0]!.bytes;
    const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    if ((await sha256DigestSliced(bytes)) !== digest) {
      throw new EngineError('INTERNAL', `blob ${digest} in the function store ${this.label} does not match its digest`);
    }
    await this.blobs.put(digest, bytes);
    return bytes;
  }

  blobPath(digest: string): string {
    return this.blobs.pathOf(digest);
  }

  // ---- invocation counts ----

  countInvocations(local: () => ReadonlyMap<string, number>): void {
    this.localCounts = local;
  }

  invocations(name: string, local: number): number {
    const totals = this.totals.get(name);
    if (!totals) return local;
    // The others' counts as last read, plus this node's own, which is always current.
    return Math.max(0, totals.total - totals.mine) + local;
  }

  /** Adds this node's new invocations to the database, then reads every function's total. */
  private async syncCounts(): Promise<void> {
    if (this.counting || this.unreachable !== undefined) return;
    this.counting = true;
    try {
      const names: string[] = [];
      const deltas: number[] = [];
      const counts: number[] = [];
      for (const [name, count] of this.localCounts()) {
        if (!this.records.has(name)) continue;
        const before = this.sent.get(name) ?? 0;
        // Fewer than sent: the function was deleted and deployed again here; its count starts over.
        const delta = count >= before ? count - before : count;
        if (delta > 0) {
          names.push(name);
          deltas.push(delta);
          counts.push(count);
        }
      }
      if (names.length > 0) {
        await this.pool.query(
          `INSERT INTO wasm_invocation_counts (name, node, count)
           SELECT d.name, $3, d.delta FROM unnest($1::text[], $2::bigint[]) AS d(name, delta)
           WHERE EXISTS (SELECT 1 FROM wasm_functions f WHERE f.name = d.name)
           ON CONFLICT (name, node) DO UPDATE SET count = wasm_invocation_counts.count + EXCLUDED.count`,
          [names, deltas, this.node],
        );
        names.forEach((name, i) => this.sent.set(name, counts[i]!));
      }
      const { rows } = await this.pool.query<{ name: string; total: string }>(
        'SELECT name, sum(count)::text AS total FROM wasm_invocation_counts GROUP BY name',
      );
      const totals = new Map<string, { total: number; mine: number }>();
      for (const row of rows) totals.set(row.name, { total: Number(row.total), mine: this.sent.get(row.name) ?? 0 });
      this.totals = totals;
    } catch (err) {
      this.logger.debug({ store: this.label, err: reasonOf(err) }, 'could not exchange invocation counts');
    } finally {
      this.counting = false;
    }
  }

  // ---- errors ----

  private unavailable(reason: string, cause?: unknown): EngineError {
    return new EngineError('UNAVAILABLE', `the function store ${this.label} is unavailable: ${reason}`, {
      retryAfterSeconds: 1,
      ...(cause === undefined ? {} : { cause }),
    });
  }

  /** A database failure as the engine's error: unreachable or timed out is UNAVAILABLE, a bug INTERNAL. */
  private translate(err: unknown): EngineError {
    if (err instanceof EngineError) return err;
    const code = (err as { code?: unknown }).code;
    if (code === '57014') return this.unavailable(`it did not answer within ${this.timeoutMs} ms`, err);
    if (isConnectionError(err)) {
      const reason = reasonOf(err);
      this.lost(reason);
      return this.unavailable(reason, err);
    }
    return new EngineError('INTERNAL', `the function store ${this.label} failed: ${reasonOf(err)}`, { cause: err });
  }
}

/**
 * Whether an error means the server cannot be reached or is going away (rather than refusing a
 * statement): a socket error (ECONNREFUSED, ECONNRESET…), the client's own connection and read
 * timeouts, and from the server connection exceptions (08), operator intervention (57P: shutdown,
 * crash, starting up) and too many connections. Anything else (a bug included) is not.
 */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof EngineError) return err.code === 'UNAVAILABLE';
  if (err instanceof pg.DatabaseError) {
    const code = err.code ?? '';
    return code.startsWith('08') || code.startsWith('57P') || code === '53300';
  }
  if (err instanceof AggregateError) return err.errors.some(isConnectionError);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('E')) return true;
  const message = err instanceof Error ? err.message : '';
  return /connection|connect|timeout|terminated/i.test(message);
}

function reasonOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return reasonOf(err.errors[0]);
  const message = err instanceof Error ? err.message : String(err);
  return message === '' ? String((err as { code?: unknown }).code ?? 'unknown error') : message;
}
