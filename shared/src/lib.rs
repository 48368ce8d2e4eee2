//! Shared by every orca-backup tool: the JSON record, errors and exit codes,
//! paths and config, backup names, the Docker engine client, atomic files and
//! locks, and a streaming tar parser.
//!
//! Each tool is a small binary whose logic lives in its own crate under `bins/`;
//! what two or more tools need lives here.

pub mod app;
pub mod catalog;
pub mod config;
pub mod consistency;
pub mod contenthash;
pub mod creator;
pub mod crypt;
pub mod discover;
pub mod docker;
pub mod engine;
pub mod exit;
pub mod fsutil;
pub mod interrupt;
pub mod journal;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod paths;
pub mod private;
pub mod progress;
pub mod record;
pub mod redact;
pub mod sapassword;
pub mod tarscan;
pub mod testpoint;
pub mod volume_lock;

pub use exit::{ErrorKind, OrcaError};
