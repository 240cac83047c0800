//! `echo-string` — string ABI (SPEC §3b): answers its input bytes followed by `b`,
//! e.g. `{"a":"x"}` -> `{"a":"x"}b`. The export name has a hyphen, hence `export_name`.
//! See ../authentication/lib.rs for why the build needs RUSTC_BOOTSTRAP=1 (`extern "wasm"`).
#![feature(wasm_abi)]

#[repr(C)]
pub struct R(i32, i32);

#[export_name = "echo-string"]
pub extern "wasm" fn echo_string(ptr: i32, len: i32) -> R {
    let input: &[u8] = if len <= 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees that [ptr, ptr + len) lies inside linear memory.
        unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
    };
    let mut answer = Vec::with_capacity(input.len() + 1);
    answer.extend_from_slice(input);
    answer.push(b'b');
    let out = R(answer.as_ptr() as i32, answer.len() as i32);
    core::mem::forget(answer); // read by the host after the call; the instance is thrown away
    out
}
