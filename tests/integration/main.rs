//! End-to-end tests: the real binaries, a real Docker engine, real pipes.
//!
//! This root package is the one home that sees every tool's binary, so whole
//! pipelines are tested here, one module per tool or workflow. Docker-backed
//! tests fail when `ORCA_REQUIRE_DOCKER=1` and no engine answers, and skip with
//! a loud notice otherwise. Each test has its own ORCA_HOME and uniquely named
//! volumes and containers, removed even when it fails.

#![cfg(unix)] // the engine, the mounts and the modes are Unix things
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

mod archives;
mod catalog;
mod common;
mod copies;
mod crash;
mod drill;
mod encryption;
mod engine;
mod export;
mod first_hour;
mod foundation;
mod guard;
mod hardening;
mod hot;
mod notify;
mod prune;
mod restore;
mod schedule;
mod scripts;
mod status;
mod verify;
mod workflow;
