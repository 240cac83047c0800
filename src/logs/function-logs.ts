/**
 * What functions write to stderr, kept per function in a bounded ring of lines (the oldest lines
 * go first), read back by tail/since and followed live — the OpenFaaS `/system/logs` model. Lines
 * are kept in memory only: a restart starts with empty rings, as a restarted container does.
 */
import type { EngineEvents } from '../core/events.js';

/** The faas-provider logs Message, field for field. */
export interface LogMessage {
  name: string;
  namespace: string;
  instance: string;
  /** RFC 3339. */
  timestamp: string;
  text: string;
}

export interface LogQuery {
  name: string;
  /** The last `tail` lines; <= 0 or absent: all. */
  tail?: number;
  /** Only lines at or after this time. */
  since?: Date;
}

export interface FunctionLogsOptions {
  /** Lines kept per function. */
  linesPerFunction: number;
  namespace: string;
  /** Where the lines came from: this engine (the replica, in OpenFaaS terms). */
  instance: string;
}

/** A line longer than this is cut: a runaway writer cannot make one ring entry huge. */
export const MAX_LINE_CHARS = 16 * 1024;
/**
 * Of one call's stderr, only the last this many characters are split into lines: a call that
 * writes megabytes (or millions of empty lines) costs the HTTP thread a bounded amount of work.
 * The worker already sends at most the last 64 KiB (runtime/wasi/output.ts STDERR_LOG_BYTES).
 */
export const MAX_CALL_CHARS = 64 * 1024;
/** Characters of text kept per function; the oldest lines go first past it (or past the line count). */
export const MAX_FUNCTION_CHARS = 1024 * 1024;
/** Characters of text kept in all: past it, the function written to least recently loses its oldest lines. */
export const MAX_TOTAL_CHARS = 64 * 1024 * 1024;

interface Line {
  time: number;
  text: string;
}

class Ring {
  private readonly lines: (Line | undefined)[];
  private start = 0;
  size = 0;
  /** Characters of text held. */
  chars = 0;

  constructor(private readonly capacity: number) {
    this.lines = new Array<Line | undefined>(capacity);
  }

  /** Adds a line; returns the characters that left with the line it pushed out, if any. */
  push(line: Line): number {
    if (this.capacity === 0) return 0;
    this.chars += line.text.length;
    if (this.size < this.capacity) {
      this.lines[(this.start + this.size) % this.capacity] = line;
      this.size += 1;
      return 0;
    }
    const gone = this.lines[this.start]!.text.length;
    this.chars -= gone;
    this.lines[this.start] = line;
    this.start = (this.start + 1) % this.capacity;
    return gone;
  }

  /** Drops the oldest line; returns its characters. */
  shift(): number {
    if (this.size === 0) return 0;
    const gone = this.lines[this.start]!.text.length;
    this.lines[this.start] = undefined;
    this.start = (this.start + 1) % this.capacity;
    this.size -= 1;
    this.chars -= gone;
    return gone;
  }

  /** Oldest first. */
  toArray(): Line[] {
    const out: Line[] = [];
    for (let i = 0; i < this.size; i += 1) out.push(this.lines[(this.start + i) % this.capacity]!);
    return out;
  }
}

/**
 * A copy of `text` that holds no reference to the string it was cut from: V8 makes a slice of a
 * long string a view into its parent, so one kept line would keep a call's whole stderr alive.
 */
function copyOf(text: string): string {
  return text.length < 13 ? text : Buffer.from(text, 'utf8').toString('utf8');
}

/** The last `max` lines of `text` (a final newline ends a line, it does not start one), newest last. */
function lastLines(text: string, max: number): string[] {
  let end = text.length;
  if (end > 0 && text.charCodeAt(end - 1) === NEWLINE) end -= 1;
  const out: string[] = [];
  while (out.length < max) {
    const at = text.lastIndexOf('\n', end - 1);
    out.push(text.slice(at + 1, end));
    if (at < 0) break;
    end = at;
  }
  return out.reverse();
}

const NEWLINE = 0x0a;

/** The lines of one call's stderr, oldest first. */
export type LogListener = (messages: LogMessage[]) => void;

export interface LogSubscription {
  /** Stops delivering; idempotent. */
  close(): void;
}

interface Subscriber {
  listener: LogListener;
  /** Called when the stream must end (function deleted, engine stopping). */
  end: () => void;
}

export class FunctionLogs implements EngineEvents {
  /** In order of last write, least recent first (a write moves its ring to the end). */
  private readonly rings = new Map<string, Ring>();
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  /** Characters held by every ring together. */
  private chars = 0;

  constructor(private readonly options: FunctionLogsOptions) {}

  get instanceName(): string {
    return this.options.instance;
  }

  /** Characters of log text held in all (for the tests of the bounds). */
  get heldChars(): number {
    return this.chars;
  }

  functionStderr(fn: string, text: string): void {
    const capacity = this.options.linesPerFunction;
    let ring = this.rings.get(fn);
    if (ring) this.rings.delete(fn);
    else ring = new Ring(capacity);
    this.rings.set(fn, ring);
    if (capacity === 0) return;
    const time = Date.now();
    const cut = text.length > MAX_CALL_CHARS;
    const parts = lastLines(cut ? text.slice(text.length - MAX_CALL_CHARS) : text, capacity);
    // The first line kept of a cut text is only its end.
    if (cut && parts.length > 0) parts[0] = `…${parts[0]}`;
    const subs = this.subscribers.get(fn);
    const added: Line[] = [];
    for (const part of parts) {
      const line = { time, text: part.length > MAX_LINE_CHARS ? `${copyOf(part.slice(0, MAX_LINE_CHARS))}…` : copyOf(part) };
      this.chars += line.text.length - ring.push(line);
      if (subs) added.push(line);
    }
    while (ring.chars > MAX_FUNCTION_CHARS && ring.size > 1) this.chars -= ring.shift();
    this.trimTotal();
    if (subs && added.length > 0) {
      const messages = added.map((line) => this.message(fn, line));
      for (const sub of subs) sub.listener(messages);
    }
  }

  /** Least recently written functions lose their oldest lines until the total is within bound. */
  private trimTotal(): void {
    if (this.chars <= MAX_TOTAL_CHARS) return;
    for (const ring of this.rings.values()) {
      while (ring.size > 0 && this.chars > MAX_TOTAL_CHARS) this.chars -= ring.shift();
      if (this.chars <= MAX_TOTAL_CHARS) return;
    }
  }

  functionRemoved(fn: string): void {
    const ring = this.rings.get(fn);
    if (ring) this.chars -= ring.chars;
    this.rings.delete(fn);
    const subs = this.subscribers.get(fn);
    this.subscribers.delete(fn);
    if (subs) for (const sub of subs) sub.end();
  }

  invocation(): void {}
  invocationBatch(): void {}
  deploy(): void {}
  pull(): void {}

  query(q: LogQuery): LogMessage[] {
    const ring = this.rings.get(q.name);
    if (!ring) return [];
    let lines = ring.toArray();
    if (q.since) {
      const since = q.since.getTime();
      lines = lines.filter((l) => l.time >= since);
    }
    if (q.tail !== undefined && q.tail > 0 && lines.length > q.tail) lines = lines.slice(lines.length - q.tail);
    return lines.map((l) => this.message(q.name, l));
  }

  /** Delivers every new line of `name` until closed, or until `end` is called by the logs' owner. */
  subscribe(name: string, listener: LogListener, end: () => void): LogSubscription {
    let subs = this.subscribers.get(name);
    if (!subs) {
      subs = new Set();
      this.subscribers.set(name, subs);
    }
    const sub: Subscriber = { listener, end };
    subs.add(sub);
    return {
      close: () => {
        const current = this.subscribers.get(name);
        if (!current) return;
        current.delete(sub);
        if (current.size === 0) this.subscribers.delete(name);
      },
    };
  }

  /** Ends every follower (the engine is stopping). */
  endAll(): void {
    const all = [...this.subscribers.values()];
    this.subscribers.clear();
    for (const subs of all) for (const sub of subs) sub.end();
  }

  private message(name: string, line: Line): LogMessage {
    return {
      name,
      namespace: this.options.namespace,
      instance: this.options.instance,
      timestamp: new Date(line.time).toISOString(),
      text: line.text,
    };
  }
}
