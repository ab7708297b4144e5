//! The tokio runtime the binaries run on, chosen by `--worker-threads`.
//!
//! Why a choice: on a multi-threaded runtime a broadcast on one thread wakes connection
//! tasks that another thread may pick up, and every such hand-off is a futex wake-up and
//! a context switch. When a node has a core to itself that is the price of using it; when
//! several nodes (and the load generator) share two cores, one thread per node does the
//! same work with none of those wake-ups.

use std::io;

/// A runtime with `worker_threads` threads for tasks: 0 means one per CPU core, 1 a
/// current-thread runtime (tasks run on the thread that calls `block_on`).
pub fn build(worker_threads: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = if worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if worker_threads > 1 {
            b.worker_threads(worker_threads);
        }
        b
    };
    builder.enable_all().build()
}

/// Runs `future` to completion on a runtime of `worker_threads` threads (see [`build`]);
/// the error is the runtime's own, when it cannot start.
pub fn block_on<F: std::future::Future>(worker_threads: usize, future: F) -> io::Result<F::Output> {
    Ok(build(worker_threads)?.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_runs_tasks_on_the_calling_thread() {
        let rt = build(1).unwrap();
        let caller = std::thread::current().id();
        let ran_on =
            rt.block_on(async { tokio::spawn(async { std::thread::current().id() }).await });
        assert_eq!(ran_on.unwrap(), caller);
    }

    #[test]
    fn more_threads_make_a_multi_threaded_runtime() {
        for n in [0, 3] {
            let rt = build(n).unwrap();
            let flavor = rt.handle().runtime_flavor();
            assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
            if n == 3 {
                assert_eq!(rt.metrics().num_workers(), 3);
            }
        }
    }
}
