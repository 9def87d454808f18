//! The Python checkers (`tests/py/*.py`), each served by one long-lived
//! process per test thread (`tests/py/serve.py`): importing numpy, onnx and
//! onnxruntime costs 1–2 s of CPU, and the suite makes a few hundred calls.
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The Python that has numpy, onnx and onnxruntime: `$ADAMP_GRAPH_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("ADAMP_GRAPH_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The process's stderr (onnxruntime's warnings, tracebacks), for errors.
    log: std::fs::File,
}

impl Server {
    fn start(script: &str) -> Result<Server, String> {
        let log = tempfile::tempfile().map_err(|e| format!("a temporary file for the checker's stderr: {e}"))?;
        let mut child = Command::new(python())
            .arg(root().join("tests/py/serve.py"))
            .arg(root().join("tests/py").join(script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot run {} ({e}); set ADAMP_GRAPH_PYTHON to a Python with numpy, onnx and onnxruntime (scripts/test.sh makes one)", python()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Server { child, stdin, stdout, log })
    }

    /// The last few KiB the process wrote to stderr.
    fn log_tail(&mut self) -> String {
        let mut s = String::new();
        let len = self.log.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = self.log.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let _ = self.log.read_to_string(&mut s);
        s
    }

    fn call(&mut self, args: &[&str]) -> Result<Value, String> {
        let request = serde_json::to_string(args).map_err(|e| e.to_string())?;
        let mut line = String::new();
        let sent = writeln!(self.stdin, "{request}").and_then(|_| self.stdin.flush());
        if sent.is_err() || self.stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err(format!("the checker process ended; its stderr:\n{}", self.log_tail()));
        }
        let reply: Value = serde_json::from_str(&line).map_err(|e| format!("checker reply is not JSON ({e}): {line}"))?;
        match (reply.get("ok"), reply.get("error")) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(e)) => Err(format!("{}\n{}", e.as_str().unwrap_or_default(), self.log_tail())),
            _ => Err(format!("checker reply has neither ok nor error: {line}")),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // No checker process outlives its thread.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

thread_local! {
    static SERVERS: RefCell<HashMap<String, Server>> = RefCell::new(HashMap::new());
}

/// [`call`], panicking with the error (and what the checker needs) when it fails.
pub fn run(script: &str, args: &[&str]) -> Value {
    call(script, args).unwrap_or_else(|e| panic!("{e}\n(needs numpy, onnx and onnxruntime; scripts/test.sh installs them in a venv)"))
}

/// Runs `script`'s command line `args` (e.g. `["run", step, dir]`) in this
/// thread's process for the script, starting it on first use (and again
/// after it died). `Err` holds the error and the tail of its stderr.
pub fn call(script: &str, args: &[&str]) -> Result<Value, String> {
    SERVERS.with(|servers| {
        let mut servers = servers.borrow_mut();
        if !servers.contains_key(script) {
            servers.insert(script.to_string(), Server::start(script)?);
        }
        let server = servers.get_mut(script).ok_or("no server")?;
        let r = server.call(args);
        if r.is_err() && server.child.try_wait().ok().flatten().is_some() {
            servers.remove(script);
        }
        r.map_err(|e| format!("{} tests/py/{script} {}: {e}", python(), args.join(" ")))
    })
}
