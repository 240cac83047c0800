import { describe, expect, it } from 'vitest';
import { imageReferenceCheck, localImagesAllowed } from '../../src/core/image-policy.js';

describe('image policy', () => {
  it('allows local sources on a loopback bind only, unless told otherwise', () => {
    expect(localImagesAllowed('auto', '127.0.0.1')).toBe(true);
    expect(localImagesAllowed('auto', '::1')).toBe(true);
    expect(localImagesAllowed('auto', '0.0.0.0')).toBe(false);
    expect(localImagesAllowed('allow', '0.0.0.0')).toBe(true);
    expect(localImagesAllowed('deny', '127.0.0.1')).toBe(false);
  });

  it('refuses file: and oci: when local sources are off, and still checks every reference', () => {
    const check = imageReferenceCheck(false);
    expect(() => check('file:/etc/passwd')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST', message: expect.stringMatching(/--local-images/) }));
    expect(() => check('oci:/var/lib/images/x:latest')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => check('127.0.0.1:5000/gcd:v1')).not.toThrow();
    expect(() => check('Bad Ref')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => imageReferenceCheck(true)('file:/tmp/x.wasm')).not.toThrow();
  });
});
