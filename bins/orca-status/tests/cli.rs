//! The `orca-status` command line keeps the contract every tool keeps.

orca_test_support::cli_contract_tests!("orca-status");
