//! `authentication` — the historical WasmEngine example, string ABI (SPEC §3b).
//!
//! The engine writes the JSON text of the args at `__heap_base` and calls
//! `authentication(ptr, len)`; the answer is returned as `(ptr, len)` of UTF-8 bytes in memory.
//! Logic: see ../common/auth.rs (shared with `authentication-wasi`).
//!
//! Built by scripts/build-examples.sh with
//!   RUSTC_BOOTSTRAP=1 /usr/bin/rustc --edition 2021 --target wasm32-unknown-unknown \
//!     --crate-type cdylib -O ...
//! Why RUSTC_BOOTSTRAP: returning two i32 values needs WebAssembly multi-value. Rust 1.63's stable
//! `extern "C"` ABI on wasm32 returns a struct through a hidden pointer argument instead (the
//! export would be `(i32, i32, i32) -> nil`), and there is no stable multi-value C ABI. The
//! unstable `extern "wasm"` ABI (feature `wasm_abi`) returns `#[repr(C)]` structs of scalars as
//! multiple results, which gives the required `(i32, i32) -> (i32, i32)`. RUSTC_BOOTSTRAP=1 lets
//! Debian's stable rustc accept the `#![feature]` line.
#![feature(wasm_abi)]

#[path = "../common/auth.rs"]
mod auth;

/// Two i32 results: the pointer and the length of the answer.
#[repr(C)]
pub struct R(i32, i32);

#[no_mangle]
pub extern "wasm" fn authentication(ptr: i32, len: i32) -> R {
    let input: &[u8] = if len <= 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees that [ptr, ptr + len) lies inside linear memory.
        unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
    };
    let answer = auth::handle(input).into_bytes();
    let out = R(answer.as_ptr() as i32, answer.len() as i32);
    // The host reads the bytes after the call returns; each call runs in a fresh instance, so the
    // buffer is simply left allocated.
    core::mem::forget(answer);
    out
}
