//! `hello` — the smallest WASI command: prints one line.
fn main() {
    println!("Hello, Budda!");
}
