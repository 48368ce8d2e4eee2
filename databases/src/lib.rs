//! What orca knows about database engines, in one place: which engine an
//! image runs ([`engine`]: SQL Server, PostgreSQL), where its clients live and
//! which password it was given, how to run a command inside its container
//! ([`container`]: secrets in the command's environment, never on its command
//! line), and the checks that prove a database starts and reads its data
//! ([`probe`], what `orca-drill` asks of a restored copy).
//!
//! [`hot`]: a running database's help for a consistent copy (SQL Server's
//! snapshot freeze, PostgreSQL's backup mode), held by a guard inside the
//! container that ends it when orca goes away.
//!
//! Tools that need a database's help (restore drills, hot copies, guarded
//! migrations) share this crate; a tool's own logic stays in its own crate.

pub mod container;
pub mod engine;
pub mod hot;
pub mod probe;
