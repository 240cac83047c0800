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

interface Line {
  time: number;
  text: string;
}

class Ring {
  private readonly lines: (Line | undefined)[];
  private start = 0;
  size = 0;

  constructor(private readonly capacity: number) {
    this.lines = new Array<Line | undefined>(capacity);
  }

  push(line: Line): void {
    if (this.capacity === 0) return;
    if (this.size < this.capacity) {
      this.lines[(this.start + this.size) % this.capacity] = line;
      this.size += 1;
    } else {
      this.lines[this.start] = line;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** Oldest first. */
  toArray(): Line[] {
    const out: Line[] = [];
    for (let i = 0; i < this.size; i += 1) out.push(this.lines[(this.start + i) % this.capacity]!);
    return out;
  }
}

export type LogListener = (message: LogMessage) => void;

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
  private readonly rings = new Map<string, Ring>();
  private readonly subscribers = new Map<string, Set<Subscriber>>();

  constructor(private readonly options: FunctionLogsOptions) {}

  get instanceName(): string {
    return this.options.instance;
  }

  functionStderr(fn: string, text: string): void {
    let ring = this.rings.get(fn);
    if (!ring) {
      ring = new Ring(this.options.linesPerFunction);
      this.rings.set(fn, ring);
    }
    const time = Date.now();
    const subs = this.subscribers.get(fn);
    const parts = text.split('\n');
    // A final newline ends the last line; it does not start an empty one.
    if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
    for (const part of parts) {
      const line = { time, text: part.length > MAX_LINE_CHARS ? `${part.slice(0, MAX_LINE_CHARS)}…` : part };
      ring.push(line);
      if (subs) for (const sub of subs) sub.listener(this.message(fn, line));
    }
  }

  functionRemoved(fn: string): void {
    this.rings.delete(fn);
    const subs = this.subscribers.get(fn);
    this.subscribers.delete(fn);
    if (subs) for (const sub of subs) sub.end();
  }

  invocation(): void {}
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
