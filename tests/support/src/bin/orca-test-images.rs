//! Build the tests' local images ahead of the tests (CI does): the static
//! busybox image and the empty image. No registry is needed.

fn main() {
    if !orca_test_support::docker_available() {
        eprintln!("orca-test-images: no Docker engine answers `docker version`");
        std::process::exit(3);
    }
    let busybox = orca_test_support::busybox_image();
    let empty = orca_test_support::empty_image();
    eprintln!("orca-test-images: ready: {busybox}, {empty}");
}
