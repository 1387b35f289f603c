//! A wasi:cli command: a valid component in the wrong world, which the
//! admin API must refuse with the reason.

fn main() {
    println!("not a handler");
}
