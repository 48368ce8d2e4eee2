//! Shared by every orca-backup tool: the JSON record, errors and exit codes,
//! paths and config, backup names, running docker, atomic files and locks, and a
//! streaming tar parser.
//!
//! Each tool is a small binary whose logic lives in its own crate under `bins/`;
//! what two or more tools need lives here.

pub mod app;
pub mod catalog;
pub mod config;
pub mod discover;
pub mod docker;
pub mod dockerstream;
pub mod exit;
pub mod fsutil;
pub mod interrupt;
pub mod manifest;
pub mod names;
pub mod paths;
pub mod progress;
pub mod record;
pub mod tarscan;

pub use exit::{ErrorKind, OrcaError};
