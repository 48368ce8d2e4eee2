//! Create a Docker volume filled with deterministic SQL-Server-like data, for
//! the benchmark and the demo: `orca-gen-volume NAME SIZE_MIB [SEED]`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: orca-gen-volume VOLUME SIZE_MIB [SEED]");
        std::process::exit(2);
    }
    let volume = &args[1];
    let Ok(mib) = args[2].parse::<u64>() else {
        eprintln!(
            "orca-gen-volume: SIZE_MIB must be a whole number, got {:?}",
            args[2]
        );
        std::process::exit(2);
    };
    let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let exists = orca_test_support::docker(&["volume", "inspect", volume])
        .status
        .success();
    if !exists {
        orca_test_support::docker_ok(&["volume", "create", volume]);
    }
    orca_test_support::sqldata::fill_volume(volume, mib << 20, seed);
    eprintln!(
        "orca-gen-volume: filled volume '{volume}' with {mib} MiB of SQL-Server-like data (seed {seed})"
    );
}
