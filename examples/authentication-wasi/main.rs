//! `authentication-wasi` — the same function as `authentication`, as a WASI command (SPEC §3a).
//!
//! The engine passes the JSON text of the args as the one argv string (no program name); the
//! answer is printed on stdout. Logic: see ../common/auth.rs (shared with `authentication`).
//! The JSON is taken from the last argv entry, so the module also works under a runner that puts
//! a program name first (e.g. `wasmtime authentication-wasi.wasm '{"arg_uri":"yes",...}'`).

#[path = "../common/auth.rs"]
mod auth;

fn main() {
    let input = std::env::args().last().unwrap_or_else(|| String::from("{}"));
    println!("{}", auth::handle(input.as_bytes()));
}
