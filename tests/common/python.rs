//! The Python that runs the tests' WebSocket scripts (`tests/py/ws_clients.py`,
//! `tests/browser/page_check.py`). They use `websockets.asyncio`, new in `websockets` 13, so
//! Debian 12's `python3-websockets` (10.4) is too old, and its system `pip` refuses to install
//! (an externally managed environment). `.ci/run` and the README's install line therefore
//! put `websockets` in a virtual environment at `target/pyenv`, which is found here.

use std::path::PathBuf;
use std::process::Command;

/// The oldest `websockets` with `websockets.asyncio.client`, which the scripts import.
pub const MIN_WEBSOCKETS_MAJOR: u32 = 13;

/// `$IMSERVER_PYTHON` if set, else `target/pyenv/bin/python3` if it exists, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("IMSERVER_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// [`python()`], after checking that it imports `websockets.asyncio.client` from
/// `websockets` >= [`MIN_WEBSOCKETS_MAJOR`]; otherwise the test fails and says how to get it.
pub fn require_websockets() -> PathBuf {
    let python = python();
    let check = format!(
        "import sys, websockets, websockets.asyncio.client\n\
         print(websockets.__version__)\n\
         sys.exit(int(websockets.__version__.split('.')[0]) < {MIN_WEBSOCKETS_MAJOR})"
    );
    let found = match Command::new(&python).args(["-c", &check]).output() {
        Ok(out) if out.status.success() => return python,
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => e.to_string(),
    };
    panic!(
        "this test needs Python with websockets >= {MIN_WEBSOCKETS_MAJOR} (for websockets.asyncio); \
         {} does not have it:\n{}\n\
         Run `bash .ci/run`, or from the repository: \
         `python3 -m venv target/pyenv && target/pyenv/bin/pip install 'websockets>={MIN_WEBSOCKETS_MAJOR}'` \
         (or set IMSERVER_PYTHON to a Python that has it)",
        python.display(),
        found.trim()
    );
}
