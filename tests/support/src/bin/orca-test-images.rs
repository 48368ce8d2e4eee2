//! Build the tests' local images ahead of the tests (CI does): the static
//! busybox image, the empty image and the SQL Server stand-in. No registry
//! is needed. (The PostgreSQL image: tests/support/images/postgres.sh.)

fn main() {
    if !orca_test_support::docker_available() {
        eprintln!("orca-test-images: no Docker engine answers `docker version`");
        std::process::exit(3);
    }
    let busybox = orca_test_support::busybox_image();
    let empty = orca_test_support::empty_image();
    let standin = orca_test_support::databases::mssql_standin_image();
    eprintln!("orca-test-images: ready: {busybox}, {empty}, {standin}");
}
