//! `imserver-mio`: flags to [`Config`], logging, bind, print the bound address, run.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use imserver_mio::cli::ServerArgs;
use imserver_mio::Server;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match ServerArgs::try_parse() {
        Ok(args) => args,
        Err(e) => match bad_variable(&e) {
            Some(line) => {
                eprintln!("{line}");
                return ExitCode::from(2); // clap's code for a usage error
            }
            None => e.exit(),
        },
    };
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

/// When clap refused a value that came from an `IMSERVER_*` variable rather than from the
/// command line, one line that names the variable (clap's own message names only the flag,
/// which the user never typed), e.g. `error: invalid value 'http' in IMSERVER_PORT (for
/// --port): the port must be a number 0-65535`. `None` for every other error.
fn bad_variable(e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    // "--port <PORT>" -> "port"
    let long = arg.strip_prefix("--")?.split(' ').next()?;
    let command = ServerArgs::command();
    let var = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()?;
    let flag = format!("--{long}");
    let typed = std::env::args_os()
        .skip(1)
        .filter_map(|a| a.into_string().ok())
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if typed || std::env::var_os(var).is_none_or(|v| v.to_str() != Some(value.as_str())) {
        return None;
    }
    let why = std::error::Error::source(e)
        .map(|why| format!(": {why}"))
        .unwrap_or_default();
    Some(format!(
        "error: invalid value '{value}' in {} (for {flag}){why}",
        var.to_string_lossy()
    ))
}
