//! `imserver-mio`: flags to [`Config`](imserver_mio::Config), logging, bind (or start the
//! `--workers`), print the bound addresses, run.

use imserver_mio::cli::MioArgs;
use imserver_mio::supervisor::Supervisor;
use imserver_mio::Server;
use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: MioArgs = imserver_mio::cli::parse_args();
    let config = args.server.config();
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(node) = config.cluster.node_id.clone() {
        // A node named on the command line, as every `--workers` worker is: its lines say
        // which node wrote them, for workers (or servers) that share one log.
        logger.format(move |buf, record| {
            let (at, level, target) = (buf.timestamp(), record.level(), record.target());
            writeln!(buf, "[{at} {level} {node} {target}] {}", record.args())
        });
    }
    logger.init();
    if let Err(e) = config.check() {
        return fail(e);
    }
    if args.workers > 1 {
        let mut supervisor = match Supervisor::start(&config, args.workers) {
            Ok(supervisor) => supervisor,
            Err(e) => return fail(e),
        };
        announce(supervisor.local_addrs());
        return match supervisor.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => return fail(e),
    };
    announce(&server.local_addrs());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format_args!("the event loop failed: {e}")),
    }
}

/// The first stdout line is the line protocol's bound address alone, then the WebSocket
/// and HTTP listeners' if any, so scripts and tests using port 0 can find the server; with
/// `--workers`, once every worker listens. A closed stdout is no reason to stop serving.
fn announce(addrs: &[SocketAddr]) {
    let mut stdout = std::io::stdout();
    for addr in addrs {
        let _ = writeln!(stdout, "{addr}");
    }
    let _ = stdout.flush();
}

/// Why the server cannot start or go on: one line on stderr, exit code 1.
fn fail(why: impl Display) -> ExitCode {
    eprintln!("imserver-mio: {why}");
    ExitCode::FAILURE
}
