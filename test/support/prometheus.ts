/**
 * A parser of the Prometheus text exposition format (0.0.4), enough to read /metrics in tests:
 * comments and TYPE lines, samples with labels (quoted values with \\, \" and \n escapes), and
 * values including +Inf/-Inf/NaN.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromText {
  samples: PromSample[];
  types: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

export function parsePrometheus(text: string): PromText {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type) types.set(type[1]!, type[2]!);
      else if (!/^# (HELP \S+ .*|HELP \S+)$/.test(line) && !line.startsWith('# ')) throw new Error(`line ${i + 1}: bad comment: ${line}`);
      continue;
    }
    const name = NAME.exec(line)?.[0];
    if (!name) throw new Error(`line ${i + 1}: no metric name: ${line}`);
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      let at = 1;
      while (rest[at] !== '}') {
        const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(rest.slice(at));
        if (!label) throw new Error(`line ${i + 1}: bad label at ${at}: ${line}`);
        at += label[0].length;
        let value = '';
        while (rest[at] !== '"') {
          if (at >= rest.length) throw new Error(`line ${i + 1}: unterminated label value: ${line}`);
          if (rest[at] === '\\') {
            const next = rest[at + 1];
            value += next === 'n' ? '\n' : next;
            at += 2;
          } else {
            value += rest[at];
            at += 1;
          }
        }
        labels[label[1]!] = value;
        at += 1;
        if (rest[at] === ',') at += 1;
      }
      rest = rest.slice(at + 1);
    }
    const parts = rest.trim().split(/\s+/);
    const valueText = parts[0];
    if (valueText === undefined || parts.length > 2) throw new Error(`line ${i + 1}: bad value: ${line}`);
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    // Prometheus reads NaN in any case; prom-client writes `Nan` for a gauge with no samples yet.
    if (Number.isNaN(value) && valueText.toLowerCase() !== 'nan') throw new Error(`line ${i + 1}: bad value ${valueText}`);
    samples.push({ name, labels, value });
  }
  return { samples, types };
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when none. */
export function sampleValue(parsed: PromText, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = parsed.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** Every sample whose labels include `labels`, whatever its name. */
export function samplesWith(parsed: PromText, labels: Record<string, string>): PromSample[] {
  return parsed.samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}
