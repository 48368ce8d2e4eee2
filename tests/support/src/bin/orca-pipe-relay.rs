//! `orca-pipe-relay PIPE HOST:PORT`: serve a Windows named pipe (e.g.
//! `\\.\pipe\docker_engine`) and relay each connection to a TCP address. Under
//! Wine it lets the Windows build reach the engine through its default
//! endpoint, a named pipe, as it does under Docker Desktop. Windows only.

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    use tokio::net::windows::named_pipe::ServerOptions;
    let args: Vec<String> = std::env::args().collect();
    let (Some(pipe), Some(target)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        eprintln!("usage: orca-pipe-relay PIPE HOST:PORT");
        return std::process::ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orca-pipe-relay: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut server = match ServerOptions::new().first_pipe_instance(true).create(&pipe) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("orca-pipe-relay: cannot serve {pipe}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("listening on {pipe}");
        loop {
            if let Err(e) = server.connect().await {
                eprintln!("orca-pipe-relay: {e}");
                continue;
            }
            let client = server;
            server = match ServerOptions::new().create(&pipe) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("orca-pipe-relay: cannot serve {pipe}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(tcp) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut pipe_r, mut pipe_w) = tokio::io::split(client);
                let (mut tcp_r, mut tcp_w) = tcp.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut pipe_r, &mut tcp_w).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp_w).await;
                });
                let _ = tokio::io::copy(&mut tcp_r, &mut pipe_w).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut pipe_w).await;
                let _ = up.await;
            });
        }
    })
}

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "orca-pipe-relay serves Windows named pipes: build it for Windows and run it there or under Wine"
    );
    std::process::ExitCode::from(2)
}
