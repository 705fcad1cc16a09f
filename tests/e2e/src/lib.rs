//! The local stack as a test harness: `cargo lambda watch` serving the Lambda APIs, the
//! functions' own release-less binaries attached to it, and the event source mapping runner.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (with its process group) on drop.
pub struct Process {
    child: Child,
    pub name: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A binary of the workspace, built by `cargo test --workspace` (or `cargo build --bins`);
/// `SENTINEL_BIN_PROFILE=release` picks the release build instead.
pub fn binary(name: &str) -> PathBuf {
    let profile = std::env::var("SENTINEL_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test --workspace` or `scripts/test`",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_file(name: &str) -> Stdio {
    let dir = workspace_root().join(".local/logs/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    Stdio::from(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
}

/// `cargo lambda watch --only-lambda-apis` on a free port: the Invoke API, function URLs and
/// the runtime API the function binaries poll.
pub struct LambdaEmulator {
    pub port: u16,
    _process: Process,
    functions: Vec<Process>,
}

impl LambdaEmulator {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
            ])
            .args(["--invoke-port", &port.to_string()])
            .current_dir(workspace_root())
            .stdout(log_file(&format!("watch-{port}")))
            .stderr(log_file(&format!("watch-{port}.err")))
            .spawn()
            .expect(
                "cargo lambda must be installed (scripts/install-tools puts it in .tools/venv/bin)",
            );
        let process = Process {
            child,
            name: "cargo lambda watch".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Any HTTP path is a function URL here and would wait for a function: probe TCP.
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not start on :{port}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            port,
            _process: process,
            functions: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Attaches a function binary to the emulator under its own name, with extra environment.
    pub fn attach(&mut self, function: &str, env: &[(&str, &str)]) {
        let child = Command::new(binary(function))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{function}", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .envs(env.iter().copied())
            .stdout(log_file(&format!("{function}-{}", self.port)))
            .stderr(log_file(&format!("{function}-{}.err", self.port)))
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {function}: {e}"));
        self.functions.push(Process {
            child,
            name: function.into(),
        });
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        self.functions.clear();
    }
}
