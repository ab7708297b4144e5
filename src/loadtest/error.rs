//! Why a load test could not be made (as opposed to a run whose criteria failed, which
//! is a [`super::run::Verdict`]). `rtctl loadtest` exits 2 on any of these.
//!
//! Each message says what failed and, where there is one, what to do; causes are part
//! of the message (not a `#[source]`), so the command prints one line.

use super::spawn::SpawnError;

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error(
        "no token secret: pass --token-secret (or NEXTAUTH_SECRET) with the servers' \
         NEXTAUTH_SECRET"
    )]
    NoTokenSecret,
    #[error("the notifications scenario needs --service-token (RT_SERVICE_TOKEN of the servers)")]
    NoServiceToken,
    #[error("no server: pass --url URL[,URL…] or --spawn-nodes M")]
    NoServer,
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    #[error("{url:?}: cannot resolve {authority:?} (expected http://host:port): {error}")]
    Resolve {
        url: String,
        authority: String,
        error: std::io::Error,
    },
    #[error("{url:?}: {authority:?} has no address")]
    NoAddress { url: String, authority: String },
    #[error("cannot find this executable to run workers: {0}")]
    WorkerExe(std::io::Error),
    #[error("cannot start a worker ({exe}): {error}")]
    WorkerStart { exe: String, error: std::io::Error },
    #[error("cannot send worker {worker} its instructions: {error}")]
    WorkerStdin {
        worker: usize,
        error: std::io::Error,
    },
    #[error("loadtest worker {addr}: {problem}")]
    RemoteWorker { addr: String, problem: String },
    #[error("workers ended unexpectedly")]
    WorkersGone,
    /// A worker reported an error of its own (its message, as it wrote it).
    #[error("worker {worker}: {message}")]
    Worker { worker: usize, message: String },
    #[error("worker {0} exited during the ramp")]
    ExitedDuringRamp(usize),
    #[error("worker {0} exited without a result")]
    ExitedWithoutResult(usize),
    #[error("no client could connect (is the server up, and the token secret right?)")]
    NoClientConnected,
    #[error("worker {worker} sent histograms that cannot be read: {reason}")]
    Histograms { worker: u32, reason: String },
    #[error("interrupted: stopping workers and nodes")]
    Interrupted,
    #[error(
        "drills act on the nodes this run starts: pass --spawn-nodes M (--restart-redis-at \
         also needs the run to start Redis: M >= 2 and no --redis-url)"
    )]
    DrillWithoutSpawnedNodes,
    #[error(
        "--restart-postgres-at without --restart-postgres-cmd restarts the PostgreSQL this \
         run starts for its spawned nodes, and this run starts none (it does for stored \
         chat messages when PostgreSQL is installed and no --database-url is given): pass \
         --restart-postgres-cmd"
    )]
    NoPostgresToRestart,
    #[error(
        "--watch-pid {0}: no such process here (or /proc is not readable): pass the pid of a \
         server running on this machine"
    )]
    NoSuchProcess(u32),
}
