//! A worker on another machine: `rtctl loadtest worker --listen ADDR` waits for
//! coordinators (`rtctl loadtest --workers HOST:PORT,…`) and runs, for each connection,
//! the same worker a local process runs, over TCP instead of stdin/stdout. Before the
//! configuration the two sides check they run the same version (and the worker's key, if
//! it has one), and the coordinator measures the worker's clock against its own (see
//! [`super::super::ipc::Handshake`]).
//!
//! One process serves any number of connections at once (a coordinator may give it
//! several shards); its CPU and memory figures in the report are the whole process's.

use super::super::ipc::Handshake;
use super::WorkerError;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How a remote worker process runs.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// A key coordinators must present (`--key`); none: any coordinator may drive it.
    pub key: Option<String>,
    /// Tests only: pretend this machine's wall clock is this far ahead (ms), as a
    /// machine whose clock is off would be; the coordinator must measure and undo it.
    pub clock_skew_ms: f64,
}

/// Accepts coordinators until `shutdown` resolves; each connection runs on its own.
pub async fn serve(
    listener: TcpListener,
    opts: RemoteOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let opts = opts.clone();
        tokio::spawn(async move {
            match run_one(stream, &opts).await {
                Ok(()) => eprintln!("loadtest worker: coordinator {peer}: run finished"),
                Err(e) => eprintln!("loadtest worker: coordinator {peer}: {e}"),
            }
        });
    }
}

/// The handshake, then one worker run over the connection.
async fn run_one(stream: TcpStream, opts: &RemoteOptions) -> Result<(), WorkerError> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(WorkerError::Read)?
            .ok_or(WorkerError::NoConfig)?;
        let reply = match serde_json::from_str::<Handshake>(&line) {
            Ok(Handshake::Hello { version, key }) => welcome(&version, key.as_deref(), opts),
            Ok(Handshake::ClockProbe { seq }) => Handshake::ClockReply {
                seq,
                unix_ms: crate::loadtest::unix_ms(std::time::SystemTime::now())
                    + opts.clock_skew_ms,
            },
            Ok(Handshake::Begin) => break,
            Ok(other) => Handshake::Refused {
                message: format!("unexpected {other:?} from the coordinator"),
            },
            Err(e) => Handshake::Refused {
                message: format!("not a loadtest coordinator ({e})"),
            },
        };
        send(&mut write, &reply).await.map_err(WorkerError::Read)?;
        if let Handshake::Refused { message } = reply {
            return Err(WorkerError::Refused(message));
        }
    }
    let skew = opts.clock_skew_ms;
    // The coordinator measured (our clock + skew) − its clock; our Clock reads the real
    // wall clock, so it shifts by the measured offset less the skew.
    super::serve(lines, write, move |cfg| cfg.clock_offset_ms -= skew).await
}

/// `Welcome`, or `Refused` with what to do, for a coordinator's `Hello`.
fn welcome(version: &str, key: Option<&str>, opts: &RemoteOptions) -> Handshake {
    let ours = env!("CARGO_PKG_VERSION");
    if version != ours {
        return Handshake::Refused {
            message: format!(
                "this worker runs realtime {ours} and the coordinator {version}; run the same version on both"
            ),
        };
    }
    if let Some(expected) = &opts.key {
        let given = key.unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Handshake::Refused {
                message: "wrong or missing worker key; pass the worker's --key as --worker-key (LOADTEST_WORKER_KEY)".into(),
            };
        }
    }
    Handshake::Welcome {
        version: ours.into(),
        host: hostname(),
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, msg: &Handshake) -> std::io::Result<()> {
    let mut line = serde_json::to_string(msg).expect("handshake lines serialize");
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    w.flush().await
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
