//! Rebuilds this crate when a migration is added or changed: `sqlx::migrate!` embeds the
//! migration folders at compile time, and on stable Rust it cannot tell Cargo to watch them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
