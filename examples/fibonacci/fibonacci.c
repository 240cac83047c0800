/*
 * fibonacci — WASI command (SPEC §3a), C.
 *
 * Prints fib(n) for n given as the positional argument: args {"0":"10"} or ["10"] reach the module
 * as argv ["10"] and it prints 55. fib(0) = 0, fib(1) = 1; n may be 0..93 (fib(93) is the largest
 * that fits in 64 bits). Anything else exits 1 with a message on stderr.
 *
 * The engine passes no program name, so n is argv[argc - 1]: that is the one argument under the
 * engine, and still the right one under a runner that puts a program name first.
 */
#include <stdint.h>
#include <stdio.h>

#define MAX_N 93

int main(int argc, char **argv) {
    if (argc < 1) {
        fprintf(stderr, "fibonacci: missing argument n (a whole number 0..%d)\n", MAX_N);
        return 1;
    }
    const char *arg = argv[argc - 1];
    const char *p = arg;
    if (*p == '+')
        p++;
    if (*p == '\0') {
        fprintf(stderr, "fibonacci: n must be a whole number 0..%d, got \"%s\"\n", MAX_N, arg);
        return 1;
    }
    unsigned long n = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') {
            fprintf(stderr, "fibonacci: n must be a whole number 0..%d, got \"%s\"\n", MAX_N, arg);
            return 1;
        }
        n = n * 10 + (unsigned long)(*p - '0');
        if (n > MAX_N) {
            fprintf(stderr, "fibonacci: n must be at most %d (fib(%d) is the largest that fits in 64 bits), got \"%s\"\n",
                    MAX_N, MAX_N, arg);
            return 1;
        }
    }

    uint64_t a = 0, b = 1; /* fib(i), fib(i + 1) */
    for (unsigned long i = 0; i < n; i++) {
        uint64_t next = a + b;
        a = b;
        b = next;
    }
    printf("%llu\n", (unsigned long long)a);
    return 0;
}
