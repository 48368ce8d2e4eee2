//! Build the tests' local images ahead of the tests (CI does): the static
//! busybox image, the empty image and the SQL Server stand-in. No registry
//! is needed. (The PostgreSQL image: tests/support/images/postgres.sh.)
//!
//! `--remove` removes every image the tests build (and the test containers
//! and volumes left by killed test runs), for a developer's machine after
//! the tests; the next run builds them again.

fn main() {
    if !orca_test_support::docker_available() {
        eprintln!("orca-test-images: no Docker engine answers `docker version`");
        std::process::exit(3);
    }
    if std::env::args().nth(1).as_deref() == Some("--remove") {
        remove();
        return;
    }
    let busybox = orca_test_support::busybox_image();
    let empty = orca_test_support::empty_image();
    let standin = orca_test_support::databases::mssql_standin_image();
    eprintln!("orca-test-images: ready: {busybox}, {empty}, {standin}");
}

fn remove() {
    use orca_test_support::{docker, docker_ok};
    let label = format!("label={}=true", orca_test_support::TEST_LABEL);
    for id in docker_ok(&["ps", "-aq", "--filter", &label]).split_whitespace() {
        let _ = docker(&["rm", "-f", "-v", id]);
    }
    for v in docker_ok(&["volume", "ls", "-q", "--filter", &label]).split_whitespace() {
        let _ = docker(&["volume", "rm", "-f", v]);
    }
    for image in [
        orca_test_support::BUSYBOX_IMAGE,
        orca_test_support::EMPTY_IMAGE,
        orca_test_support::databases::POSTGRES_IMAGE,
        orca_test_support::databases::MSSQL_STANDIN_IMAGE,
        // The drill tests' stand-in with a HEALTHCHECK (tests/integration/drill.rs).
        "orca-test-mssql-standin-healthy:2",
        // Earlier versions of the stand-ins, left by older checkouts.
        "orca-test-mssql-standin:3",
        "orca-test-mssql-standin-healthy:1",
    ] {
        let out = docker(&["image", "rm", "-f", image]);
        if out.status.success() {
            eprintln!("orca-test-images: removed {image}");
        }
    }
}
