//! Running the real `imbench` binary from a test: a watchdog on every run, its output
//! collected, and readers for the one JSON line it prints with `--json`.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the watchdog lets any imbench run take before the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// What one imbench run printed, and how it ended.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The number after `"key":` in the JSON line.
    pub fn num(&self, key: &str) -> Option<u64> {
        let pat = format!("\"{key}\":");
        let at = self.stdout.find(&pat)? + pat.len();
        let digits: String = self.stdout[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    pub fn has(&self, fragment: &str) -> bool {
        self.stdout.contains(fragment)
    }

    /// Exit 0 and exactly one JSON line that says `"complete":true`.
    pub fn assert_ok(&self) {
        assert_eq!(
            self.code(),
            Some(0),
            "stdout {}\nstderr {}",
            self.stdout,
            self.stderr
        );
        assert_eq!(
            self.stdout.lines().count(),
            1,
            "one JSON line: {}",
            self.stdout
        );
        assert!(self.has("\"complete\":true"), "{}", self.stdout);
    }

    /// Exit 0, `"complete":true`, and every error count that is reported at zero.
    pub fn assert_complete(&self) {
        assert_eq!(
            self.code(),
            Some(0),
            "stdout {}\nstderr {}",
            self.stdout,
            self.stderr
        );
        assert!(self.has("\"complete\":true"), "{}", self.stdout);
        for key in [
            "missing",
            "duplicates",
            "out_of_order",
            "misdelivered",
            "garbled",
        ] {
            if self.has(&format!("\"{key}\":")) {
                assert_eq!(self.num(key), Some(0), "{key}: {}", self.stdout);
            }
        }
    }
}

/// Starts imbench with `args`, output piped.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_imbench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imbench starts")
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// Waits for `child` (killing it past the watchdog) and collects its output.
pub fn finish(mut child: Child) -> Run {
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for imbench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imbench ran past the watchdog");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs imbench with `args` to the end.
pub fn run(args: &[&str]) -> Run {
    finish(spawn(args))
}

/// Runs imbench with `args` plus `--addr ADDR --json --quiet --timeout 20`.
pub fn run_json(addr: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--addr", addr, "--json", "--quiet", "--timeout", "20"]);
    run(&all)
}
