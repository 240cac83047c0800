/*
 * gcd — numeric ABI (SPEC §3c), C, no libc and no WASI: export `gcd` (i32, i32) -> i32.
 * The greatest common divisor of |a| and |b| by Euclid's algorithm; gcd(0, 0) = 0.
 * (|-2^31| = 2^31 does not fit in an i32: gcd(-2^31, 0) answers -2147483648, its i32 wrap.)
 */
__attribute__((export_name("gcd")))
int gcd(int a, int b) {
    unsigned x = a < 0 ? 0u - (unsigned)a : (unsigned)a;
    unsigned y = b < 0 ? 0u - (unsigned)b : (unsigned)b;
    while (y != 0) {
        unsigned t = x % y;
        x = y;
        y = t;
    }
    return (int)x;
}
