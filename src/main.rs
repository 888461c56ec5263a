//! `imserver-mio`: flags to [`Config`], logging, bind, print the bound address, run.

use imserver_mio::cli::ServerArgs;
use imserver_mio::Server;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: ServerArgs = imserver_mio::cli::parse_args();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = args.config();
    if let Err(e) = config.check() {
        eprintln!("imserver-mio: {e}");
        return ExitCode::FAILURE;
    }
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("imserver-mio: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The first stdout line is the line protocol's bound address alone, then the WebSocket
    // and HTTP listeners' if any, so scripts and tests using port 0 can find the server.
    // A closed stdout is no reason to stop serving.
    let mut stdout = std::io::stdout();
    for addr in server.local_addrs() {
        let _ = writeln!(stdout, "{addr}");
    }
    let _ = stdout.flush();
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imserver-mio: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
