//! How `rtctl loadtest` shows a run while it goes: a progress bar on stderr when it is a
//! terminal (hidden otherwise, so pipes and CI get only the report), and notes and
//! warnings as lines above it.

use crate::loadtest::{Observer, Update};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;

pub(super) struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    pub(super) fn new() -> TerminalProgress {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        TerminalProgress { bar }
    }

    /// Takes the bar off the screen (the run is over, however it ended).
    pub(super) fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for TerminalProgress {
    fn update(&self, update: Update<'_>) {
        let bar = &self.bar;
        match update {
            Update::StartingNodes { count } => {
                bar.suspend(|| eprintln!("starting {count} local node(s)…"))
            }
            Update::Connecting {
                connected,
                failed,
                clients,
            } => {
                bar.set_length(clients);
                bar.set_position(connected);
                bar.set_message(format!("connecting ({failed} failed)"));
            }
            Update::Running {
                elapsed,
                duration,
                received,
                dropped,
            } => {
                bar.set_length(duration.as_secs().max(1));
                bar.set_position(elapsed.as_secs().min(duration.as_secs()));
                bar.set_message(format!("running: {received} received, {dropped} dropped"));
            }
            Update::Measured => bar.finish_and_clear(),
            Update::Warning(text) => bar.suspend(|| eprintln!("warning: {text}")),
            Update::Drill(text) => bar.suspend(|| eprintln!("drill: {text}")),
        }
    }
}
