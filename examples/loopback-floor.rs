//! The floor under every delivery on one box: what the kernel and the runtime charge for
//! one small message written on one loopback TCP connection and read on the other end,
//! with nothing of Socket.IO around it.
//!
//! Opens `--pairs` connections inside one process on one thread (tokio current-thread,
//! as a `--worker-threads 1` node), writes `--messages` messages of `--size` bytes
//! round-robin over them at `--rate` per second (so each socket sees one message at a
//! time, as a Socket.IO client does), a task per connection reading them, and prints the
//! process's CPU (user and kernel) per message. Phase 3's budget in
//! docs/scaling/benchmarks.md compares the cluster's CPU per delivery with it.
//!
//! ```text
//! cargo build --release --example loopback-floor
//! target/release/examples/loopback-floor --pairs 2000 --messages 200000 --rate 20000
//! ```

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    pairs: usize,
    messages: usize,
    size: usize,
    rate: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        pairs: 2000,
        messages: 200_000,
        size: 64,
        rate: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let n: usize = value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} takes a number"));
        match flag.as_str() {
            "--pairs" => args.pairs = n.max(1),
            "--messages" => args.messages = n,
            "--size" => args.size = n.max(1),
            "--rate" => args.rate = (n as u64).max(1),
            other => panic!("unknown flag {other} (--pairs, --messages, --size, --rate)"),
        }
    }
    args
}

/// User and kernel CPU seconds of this process so far.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a tick count") / 100.0;
    (ticks(11), ticks(12))
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let mut writers = Vec::with_capacity(args.pairs);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    for _ in 0..args.pairs {
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        server.set_nodelay(true).expect("nodelay");
        writers.push(server);
        let (size, done) = (args.size, done_tx.clone());
        tokio::spawn(async move {
            let mut client = client;
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0;
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                read += n;
            }
            let _ = done.send(read / size);
        });
    }
    drop(done_tx);
    let message = vec![b'x'; args.size];
    let (user0, sys0) = cpu_seconds();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let per_tick = (args.rate as usize / 1000).max(1);
    let mut sent = 0;
    while sent < args.messages {
        tick.tick().await;
        for _ in 0..per_tick.min(args.messages - sent) {
            let w = &mut writers[sent % args.pairs];
            w.write_all(&message).await.expect("write");
            sent += 1;
        }
    }
    drop(writers);
    let mut received = 0;
    while let Some(n) = done_rx.recv().await {
        received += n;
    }
    let (user1, sys1) = cpu_seconds();
    let elapsed = start.elapsed().as_secs_f64();
    let per = |s: f64| s / args.messages as f64 * 1e6;
    println!(
        "pairs={} messages={} received={} size={} B elapsed={:.1} s rate={:.0}/s",
        args.pairs,
        args.messages,
        received,
        args.size,
        elapsed,
        args.messages as f64 / elapsed
    );
    println!(
        "cpu per message: {:.2} us (user {:.2}, kernel {:.2})",
        per(user1 - user0 + sys1 - sys0),
        per(user1 - user0),
        per(sys1 - sys0)
    );
}
