import { describe, expect, it } from 'vitest';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';

describe('the test Prometheus parser', () => {
  it('reads samples, labels with escapes, TYPE lines and special values', () => {
    const parsed = parsePrometheus(
      [
        '# HELP a_total A counter.',
        '# TYPE a_total counter',
        'a_total{fn="x",outcome="success"} 3',
        'a_total{fn="q\\"uote\\\\d\\n",outcome="x"} 1',
        '# TYPE h histogram',
        'h_bucket{le="+Inf"} 2',
        'g 1.5e-3',
        'n NaN',
        '',
      ].join('\n'),
    );
    expect(parsed.types.get('a_total')).toBe('counter');
    expect(sampleValue(parsed, 'a_total', { fn: 'x' })).toBe(3);
    expect(sampleValue(parsed, 'a_total', { fn: 'q"uote\\d\n' })).toBe(1);
    expect(sampleValue(parsed, 'h_bucket', { le: '+Inf' })).toBe(2);
    expect(sampleValue(parsed, 'g')).toBe(0.0015);
    expect(sampleValue(parsed, 'missing')).toBeUndefined();
  });

  it('refuses what is not the text format', () => {
    expect(() => parsePrometheus('a{b=1} 2')).toThrow(/bad label/);
    expect(() => parsePrometheus('a 1 2 3')).toThrow(/bad value/);
    expect(() => parsePrometheus('{} 1')).toThrow(/no metric name/);
  });
});
