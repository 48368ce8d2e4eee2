//! orca-backup: back up and restore the Docker volume holding the Orca SQL
//! Server database.
//!
//! This root package holds no code of its own. The tools are the crates under
//! `bins/` (one binary each) and the library they share is `shared/`. The root
//! package exists so that `tests/` can run whole pipelines: it is the one place
//! whose tests see every binary (see `tests/integration/main.rs`).
