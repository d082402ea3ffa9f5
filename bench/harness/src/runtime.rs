//! A loopback Lambda Runtime API and the function processes that poll it.
//!
//! Each process gets its own listener, so the first `GET .../invocation/next`
//! it sends marks the end of its init, exactly as Lambda's INIT phase ends.
//! An invocation lasts from the moment the event is handed over (the `next`
//! response is written) to the moment its response or error has been read:
//! what Lambda reports as the invocation's duration.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::Res;
use crate::http1::{read_message, write_response};

const PREFIX: &str = "/2018-06-01/runtime";
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
enum Phase {
    Starting,
    Ready(Instant),
    InitError(String),
}

/// What the function posted for one event.
#[derive(Debug)]
pub struct Outcome {
    pub duration: Duration,
    /// Posted to `/error` rather than `/response`.
    pub error: bool,
    pub body: Vec<u8>,
}

struct Invocation {
    id: String,
    event: Vec<u8>,
    done: oneshot::Sender<Outcome>,
}

struct InFlight {
    handed_at: Instant,
    done: oneshot::Sender<Outcome>,
}

struct State {
    function_arn: String,
    phase: watch::Sender<Phase>,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    while let Ok(Some(request)) = read_message(&mut conn).await {
        let arrived = Instant::now();
        let (method, path) = request.request_line();
        let Some(path) = path.strip_prefix(PREFIX) else {
            if write_response(conn.get_mut(), 404, &[], b"{}")
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let written = if method == "GET" && path == "/invocation/next" {
            state.phase.send_if_modified(|phase| {
                let first = matches!(phase, Phase::Starting);
                if first {
                    *phase = Phase::Ready(arrived);
                }
                first
            });
            let next = state.queue.lock().await.recv().await;
            let Some(invocation) = next else { return };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                + 10_000;
            let deadline = deadline.to_string();
            let trace = format!("Root=1-00000000-{:0>24};Sampled=0", invocation.id);
            let headers = [
                ("content-type", "application/json"),
                ("lambda-runtime-aws-request-id", invocation.id.as_str()),
                ("lambda-runtime-deadline-ms", deadline.as_str()),
                (
                    "lambda-runtime-invoked-function-arn",
                    state.function_arn.as_str(),
                ),
                ("lambda-runtime-trace-id", trace.as_str()),
            ];
            let handed_at = Instant::now();
            state.in_flight.lock().expect("not poisoned").insert(
                invocation.id.clone(),
                InFlight {
                    handed_at,
                    done: invocation.done,
                },
            );
            write_response(conn.get_mut(), 200, &headers, &invocation.event).await
        } else if method == "POST" && path.starts_with("/invocation/") {
            let rest = &path["/invocation/".len()..];
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let waiting = state.in_flight.lock().expect("not poisoned").remove(id);
            if let Some(waiting) = waiting {
                let _ = waiting.done.send(Outcome {
                    duration: arrived - waiting.handed_at,
                    error: kind != "response",
                    body: request.body,
                });
            }
            write_response(conn.get_mut(), 202, &[], br#"{"status":"OK"}"#).await
        } else if method == "POST" && path == "/init/error" {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            state.phase.send_replace(Phase::InitError(body));
            write_response(conn.get_mut(), 202, &[], br#"{"status":"OK"}"#).await
        } else {
            write_response(conn.get_mut(), 404, &[], b"{}").await
        };
        if written.is_err() {
            return;
        }
    }
}

/// One function process and the runtime API it polls.
pub struct Function {
    pub name: String,
    child: Child,
    spawned_at: Instant,
    state: Arc<State>,
    queue: mpsc::UnboundedSender<Invocation>,
    server: JoinHandle<()>,
    next_id: u64,
}

impl Function {
    /// Starts `binary` with exactly `env` (nothing inherited) and a runtime API of its own.
    pub async fn spawn(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> Res<Function> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
            phase: watch::Sender::new(Phase::Starting),
            queue: tokio::sync::Mutex::new(receiver),
            in_flight: Mutex::new(HashMap::new()),
        });
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, server_state.clone()));
            }
        });
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Function {
            name: name.to_string(),
            child,
            spawned_at,
            state,
            queue,
            server,
            next_id: 0,
        })
    }

    /// Waits for the first `next` poll: the init duration.
    pub async fn ready(&mut self) -> Res<Duration> {
        let mut phase = self.state.phase.subscribe();
        let wait = phase.wait_for(|p| !matches!(p, Phase::Starting));
        let result = tokio::select! {
            changed = tokio::time::timeout(INIT_TIMEOUT, wait) => match changed {
                Err(_) => return Err(format!("{}: no runtime API poll within {INIT_TIMEOUT:?}", self.name).into()),
                Ok(Err(_)) => return Err("runtime API stopped".into()),
                Ok(Ok(phase)) => phase.clone(),
            },
            status = self.child.wait() => {
                return Err(format!("{} exited during init: {:?}", self.name, status?).into())
            }
        };
        match result {
            Phase::Ready(at) => Ok(at - self.spawned_at),
            Phase::InitError(body) => Err(format!("{} init error: {body}", self.name).into()),
            Phase::Starting => unreachable!("waited for another phase"),
        }
    }

    /// Hands `event` to the function and waits for what it posts back.
    pub async fn invoke(&mut self, event: Vec<u8>) -> Res<Outcome> {
        self.next_id += 1;
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            self.next_id
        );
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Invocation { id, event, done })
            .map_err(|_| "runtime API stopped")?;
        tokio::select! {
            outcome = tokio::time::timeout(INVOKE_TIMEOUT, outcome) => match outcome {
                Err(_) => Err(format!("{}: no response within {INVOKE_TIMEOUT:?}", self.name).into()),
                Ok(Err(_)) => Err("runtime API stopped".into()),
                Ok(Ok(outcome)) => Ok(outcome),
            },
            status = self.child.wait() => {
                Err(format!("{} exited during an invocation: {:?}", self.name, status?).into())
            }
        }
    }

    pub fn pid(&self) -> Res<u32> {
        Ok(self.child.id().ok_or("process already exited")?)
    }

    /// CPU time the process has used so far, all its threads (the
    /// scheduler's nanoseconds, `/proc/<pid>/task/*/schedstat`): what a
    /// phase would cost where CPU is scarce, as in a 128 MB function.
    pub fn cpu_time(&self) -> Res<Duration> {
        let pid = self.pid()?;
        let mut total = 0u64;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .ok_or("no run time in schedstat")?;
        }
        Ok(Duration::from_nanos(total))
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kb(&self) -> Res<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmHWM in /proc/<pid>/status".into())
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.server.abort();
    }
}
