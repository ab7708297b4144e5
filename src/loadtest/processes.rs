//! The workers as the coordinator drives them: local ones are this executable re-run
//! as `loadtest-worker` (one JSON line of [`WorkerConfig`] then [`Command`]s on its stdin,
//! [`Event`]s back on its stdout), remote ones `rtctl loadtest worker` processes reached
//! over TCP ([`super::remote`]), with the same lines after a handshake (see
//! [`super::ipc`]).

use super::error::LoadtestError;
use super::ipc::{Command, Event, Progress, WorkerResult};
use super::observe::{Observer, Update};
use super::plan::WorkerConfig;
use super::remote::{self, RemoteWorker};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// A worker's line, or `None` once its stream closed (it exited, or hung up).
type Line = (usize, Option<Event>);
/// Where a worker's commands go: a local worker's stdin, a remote one's socket.
pub(super) type CommandSink = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
/// Where a worker's events come from.
pub(super) type EventSource = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// The running workers and what they last said.
pub(super) struct Workers {
    children: Vec<Child>,
    stdins: Commander,
    events: UnboundedReceiver<Line>,
    progress: Vec<Progress>,
    /// The remote workers, with what their handshakes measured.
    pub(super) remote: Vec<RemoteWorker>,
}

/// Sends commands to every worker; cloned into whatever runs beside the schedule (the
/// drills open their windows through it).
#[derive(Clone)]
pub(super) struct Commander(Arc<tokio::sync::Mutex<Vec<CommandSink>>>);

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

/// Where the shards go: `local` slots are processes on this machine, then one slot per
/// remote worker; shard `i` goes to slot `i % slots` (a slot may get several).
pub(super) struct Placement<'a> {
    pub(super) local: usize,
    pub(super) remote: &'a [String],
    pub(super) key: Option<&'a str>,
}

impl Placement<'_> {
    /// The remote worker that runs shard `worker`, or `None` for a local process.
    fn remote_of(&self, worker: u32) -> Option<&str> {
        if self.remote.is_empty() {
            return None;
        }
        let slot = worker as usize % (self.local + self.remote.len());
        slot.checked_sub(self.local)
            .map(|i| self.remote[i].as_str())
    }
}

/// How the ramp went, over all workers.
pub(super) struct Ramp {
    pub(super) connected: u64,
    pub(super) seconds: f64,
}

impl Workers {
    /// Starts or reaches a worker per configuration and hands each its configuration.
    pub(super) async fn start(
        configs: &[WorkerConfig],
        placement: &Placement<'_>,
        observer: Arc<dyn Observer>,
    ) -> Result<Workers, LoadtestError> {
        let exe = std::env::current_exe().map_err(LoadtestError::WorkerExe)?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel::<Line>();
        let (mut children, mut stdins) = (Vec::new(), Vec::new());
        let mut remote: Vec<RemoteWorker> = Vec::new();
        for cfg in configs {
            let w = cfg.worker as usize;
            let mut cfg = cfg.clone();
            let (mut sink, source) = match placement.remote_of(cfg.worker) {
                None => {
                    let (child, stdin, stdout) = spawn(&exe)?;
                    children.push(child);
                    (
                        Box::new(stdin) as CommandSink,
                        Box::new(stdout) as EventSource,
                    )
                }
                Some(addr) => {
                    let (sink, source, mut info) = remote::connect(addr, placement.key).await?;
                    // The worker runs on our clock: it subtracts what its handshake measured.
                    cfg.clock_offset_ms = info.clock_offset_ms;
                    info.shards.push(cfg.worker);
                    match remote.iter_mut().find(|r| r.addr == info.addr) {
                        Some(known) => known.merge(info),
                        None => remote.push(info),
                    }
                    (sink, source)
                }
            };
            let line = format!(
                "{}\n",
                serde_json::to_string(&cfg).expect("a worker configuration serializes")
            );
            write(&mut sink, w, &line).await?;
            tokio::spawn(read_events(w, source, tx.clone(), observer.clone()));
            stdins.push(sink);
        }
        Ok(Workers {
            progress: vec![Progress::default(); stdins.len()],
            children,
            stdins: Commander(Arc::new(tokio::sync::Mutex::new(stdins))),
            events,
            remote,
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
        let mut ready = vec![false; self.progress.len()];
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
        let mut results: Vec<Option<WorkerResult>> = vec![None; self.progress.len()];
        while results.iter().any(Option::is_none) {
            let (w, ev) = self.next().await?;
            match ev {
                Some(Event::Progress(p)) => self.progress[w] = p,
                Some(Event::Result(r)) => {
                    let shard = r.worker;
                    if let Some(remote) = self.remote.iter_mut().find(|x| x.shards.contains(&shard))
                    {
                        remote.check_clock(&r);
                    }
                    results[w] = Some(*r);
                }
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
) -> Result<
    (
        Child,
        tokio::process::ChildStdin,
        tokio::process::ChildStdout,
    ),
    LoadtestError,
> {
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

async fn write(sink: &mut CommandSink, worker: usize, line: &str) -> Result<(), LoadtestError> {
    sink.write_all(line.as_bytes())
        .await
        .map_err(|error| LoadtestError::WorkerStdin { worker, error })?;
    sink.flush()
        .await
        .map_err(|error| LoadtestError::WorkerStdin { worker, error })
}

/// Forwards worker `w`'s events, then `None` when its stream closes.
async fn read_events(
    w: usize,
    stdout: EventSource,
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

#[cfg(test)]
mod tests {
    use super::Placement;

    #[test]
    fn shards_go_round_robin_over_local_slots_then_remote_workers() {
        let remote = ["a:1".to_owned(), "b:1".to_owned()];
        let mixed = Placement {
            local: 2,
            remote: &remote,
            key: None,
        };
        let placed: Vec<_> = (0..5).map(|w| mixed.remote_of(w)).collect();
        assert_eq!(placed, [None, None, Some("a:1"), Some("b:1"), None]);
        let only_remote = Placement {
            local: 0,
            remote: &remote[..1],
            key: None,
        };
        assert!((0..3).all(|w| only_remote.remote_of(w) == Some("a:1")));
        let local = Placement {
            local: 0,
            remote: &[],
            key: None,
        };
        assert_eq!(local.remote_of(7), None);
    }
}
