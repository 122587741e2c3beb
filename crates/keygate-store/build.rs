//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds them at compile time.

fn main() {
    // Cargo scans a directory recursively, so `migrations` alone would do; each backend's
    // directory is named as well so that neither is watched only by accident.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations/sqlite");
    println!("cargo:rerun-if-changed=migrations/postgres");
}
