/*
 * add-one — numeric ABI (SPEC §3c), C, no libc and no WASI: export `add-one` (i32) -> i32.
 * Wraps around at 2^31 - 1 like i32.add (computed unsigned, so there is no C overflow UB).
 */
__attribute__((export_name("add-one")))
int add_one(int x) {
    return (int)((unsigned)x + 1u);
}
