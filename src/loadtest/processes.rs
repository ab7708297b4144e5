//! The worker processes as the coordinator drives them: this executable re-run as
//! `loadtest-worker`, one JSON line of [`WorkerConfig`] then [`Command`]s on its stdin,
//! [`Event`]s back on its stdout (see [`super::ipc`]).

use super::error::LoadtestError;
use super::ipc::{Command, Event, Progress, WorkerResult};
use super::observe::{Observer, Update};
use super::plan::WorkerConfig;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// A worker's line, or `None` once its stdout closed (it exited).
type Line = (usize, Option<Event>);

/// The running workers and what they last said.
pub(super) struct Workers {
    children: Vec<Child>,
    stdins: Commander,
    events: UnboundedReceiver<Line>,
    progress: Vec<Progress>,
}

/// Sends commands to every worker; cloned into whatever runs beside the schedule (the
/// drills open their windows through it).
#[derive(Clone)]
pub(super) struct Commander(Arc<tokio::sync::Mutex<Vec<ChildStdin>>>);

impl Commander {
    /// Writes `cmd` to every worker, in order.
    pub(super) async fn send(&self, cmd: &Command) -> Result<(), LoadtestError> {
        let line = format!(
            "{}\n",
            serde_json::to_string(cmd).expect("commands serialize")
        );
        let mut stdins = self.0.lock().await;
        for (w, stdin) in stdins.iter_mut().enumerate() {
            write(stdin, w, &line).await?;
        }
        Ok(())
    }
}

/// How the ramp went, over all workers.
pub(super) struct Ramp {
    pub(super) connected: u64,
    pub(super) seconds: f64,
}

impl Workers {
    /// Starts one process per configuration and hands each its configuration.
    pub(super) async fn start(
        configs: &[WorkerConfig],
        observer: Arc<dyn Observer>,
    ) -> Result<Workers, LoadtestError> {
        let exe = std::env::current_exe().map_err(LoadtestError::WorkerExe)?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel::<Line>();
        let (mut children, mut stdins) = (Vec::new(), Vec::new());
        for cfg in configs {
            let w = cfg.worker as usize;
            let (child, mut stdin, stdout) = spawn(&exe)?;
            let line = format!(
                "{}\n",
                serde_json::to_string(cfg).expect("a worker configuration serializes")
            );
            write(&mut stdin, w, &line).await?;
            tokio::spawn(read_events(w, stdout, tx.clone(), observer.clone()));
            children.push(child);
            stdins.push(stdin);
        }
        Ok(Workers {
            progress: vec![Progress::default(); children.len()],
            children,
            stdins: Commander(Arc::new(tokio::sync::Mutex::new(stdins))),
            events,
        })
    }

    /// Follows the workers' progress until every one is ready (connected or failed all
    /// its clients).
    pub(super) async fn ramp(
        &mut self,
        clients: u64,
        observer: &dyn Observer,
    ) -> Result<Ramp, LoadtestError> {
        let started = Instant::now();
        observer.update(Update::Connecting {
            connected: 0,
            failed: 0,
            clients,
        });
        let mut ready = vec![false; self.children.len()];
        while ready.iter().any(|r| !r) {
            let (w, ev) = self.next().await?;
            match ev {
                Some(Event::Progress(p)) => self.progress[w] = p,
                Some(Event::Ready(p)) => {
                    self.progress[w] = p;
                    ready[w] = true;
                }
                Some(Event::Error { message }) => {
                    return Err(LoadtestError::Worker { worker: w, message })
                }
                Some(Event::Result(_)) => {}
                None => return Err(LoadtestError::ExitedDuringRamp(w)),
            }
            observer.update(Update::Connecting {
                connected: self.sum(|p| p.connected),
                failed: self.sum(|p| p.failed),
                clients,
            });
        }
        Ok(Ramp {
            connected: self.sum(|p| p.connected),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Tells every worker to start its schedule at the same instant.
    pub(super) async fn start_at(&mut self, at_unix_ms: f64) -> Result<(), LoadtestError> {
        self.stdins.send(&Command::Start { at_unix_ms }).await
    }

    /// A handle that sends commands to every worker while the schedule runs.
    pub(super) fn commander(&self) -> Commander {
        self.stdins.clone()
    }

    /// Follows the schedule until every worker has sent its result.
    pub(super) async fn results(
        &mut self,
        duration: Duration,
        observer: &dyn Observer,
    ) -> Result<Vec<WorkerResult>, LoadtestError> {
        let started = Instant::now();
        observer.update(Update::Running {
            elapsed: Duration::ZERO,
            duration,
            received: 0,
            dropped: 0,
        });
        let mut results: Vec<Option<WorkerResult>> = vec![None; self.children.len()];
        while results.iter().any(Option::is_none) {
            let (w, ev) = self.next().await?;
            match ev {
                Some(Event::Progress(p)) => self.progress[w] = p,
                Some(Event::Result(r)) => results[w] = Some(*r),
                Some(Event::Error { message }) => {
                    return Err(LoadtestError::Worker { worker: w, message })
                }
                Some(Event::Ready(_)) => {}
                None if results[w].is_none() => return Err(LoadtestError::ExitedWithoutResult(w)),
                None => {}
            }
            observer.update(Update::Running {
                elapsed: started.elapsed(),
                duration,
                received: self.sum(|p| p.received),
                dropped: self.sum(|p| p.dropped),
            });
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Closes their stdin (their cue to exit) and waits up to 15 s for each; one that
    /// lingers is killed with its handle.
    pub(super) async fn finish(self) {
        self.stdins.0.lock().await.clear();
        for mut child in self.children {
            let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
        }
    }

    async fn next(&mut self) -> Result<Line, LoadtestError> {
        self.events.recv().await.ok_or(LoadtestError::WorkersGone)
    }

    fn sum(&self, field: impl Fn(&Progress) -> u64) -> u64 {
        self.progress.iter().map(field).sum()
    }
}

/// One worker process, in its own process group (a Ctrl-C at the terminal reaches only
/// the coordinator, which stops it) and killed when its handle drops.
fn spawn(
    exe: &std::path::Path,
) -> Result<(Child, ChildStdin, tokio::process::ChildStdout), LoadtestError> {
    let mut child = tokio::process::Command::new(exe)
        .arg("loadtest-worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| LoadtestError::WorkerStart {
            exe: exe.display().to_string(),
            error,
        })?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    Ok((child, stdin, stdout))
}

async fn write(stdin: &mut ChildStdin, worker: usize, line: &str) -> Result<(), LoadtestError> {
    stdin
        .write_all(line.as_bytes())
        .await
        .map_err(|error| LoadtestError::WorkerStdin { worker, error })
}

/// Forwards worker `w`'s events, then `None` when its stdout closes.
async fn read_events(
    w: usize,
    stdout: tokio::process::ChildStdout,
    tx: UnboundedSender<Line>,
    observer: Arc<dyn Observer>,
) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        match serde_json::from_str::<Event>(&l) {
            Ok(ev) => {
                let _ = tx.send((w, Some(ev)));
            }
            Err(e) => observer.update(Update::Warning(&format!(
                "worker {w}: unreadable line ({e}): {l}"
            ))),
        }
    }
    let _ = tx.send((w, None));
}
