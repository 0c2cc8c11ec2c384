//! A progress display for rollouts: one live line per instance and one per
//! step on a terminal (indicatif), plain timestamped lines otherwise (CI,
//! pipes, files).
//!
//! Both modes print the same permanent log: each phase, each engine step
//! with its duration, the sub-steps of a switchover, waits when their
//! reason changes, crashes and restarts by the supervisor.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use switchyard_plan::engine::StepOutcome;
use switchyard_plan::topology::{Instance, Role};

use crate::timeline::{Event, Observer, Op, StartedBy};

enum Mode {
    Bars {
        multi: MultiProgress,
        header: ProgressBar,
        instances: Vec<ProgressBar>,
        footer: ProgressBar,
    },
    Plain,
}

#[derive(Default)]
struct State {
    last_step: Option<Instant>,
    last_wait: Option<String>,
    ops: BTreeMap<u32, String>,
    phase: String,
}

/// Shows a rollout as it happens. Register it with
/// [`crate::Timeline::observe_with`].
pub struct Progress {
    start: Instant,
    mode: Mode,
    state: Mutex<State>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("bars", &matches!(self.mode, Mode::Bars { .. }))
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Live bars when stderr is a terminal, plain lines otherwise.
    pub fn new(instances: usize) -> Arc<Progress> {
        if std::io::stderr().is_terminal() {
            Self::bars(instances)
        } else {
            Self::plain()
        }
    }

    /// Plain timestamped lines on stderr.
    pub fn plain() -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            mode: Mode::Plain,
            state: Mutex::new(State::default()),
        })
    }

    /// Live bars on stderr.
    pub fn bars(instances: usize) -> Arc<Progress> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let spinner = ProgressStyle::with_template("{spinner:.cyan} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let plain = ProgressStyle::with_template("  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let header = multi.add(ProgressBar::new_spinner().with_style(spinner));
        header.enable_steady_tick(Duration::from_millis(120));
        let instances = (0..instances)
            .map(|o| {
                let bar = multi.add(ProgressBar::new_spinner().with_style(plain.clone()));
                bar.set_message(format!("n{o}"));
                bar
            })
            .collect();
        let footer = multi.add(ProgressBar::new_spinner().with_style(plain));
        Arc::new(Progress {
            start: Instant::now(),
            mode: Mode::Bars {
                multi,
                header,
                instances,
                footer,
            },
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints a permanent line, stamped with the time since the start.
    pub fn line(&self, text: impl AsRef<str>) {
        let stamped = format!(
            "[{:>6.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            text.as_ref()
        );
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.println(stamped);
            }
            Mode::Plain => eprintln!("{stamped}"),
        }
    }

    /// Shows the load's state on the footer line (bars only).
    pub fn status(&self, text: impl Into<String>) {
        if let Mode::Bars { footer, .. } = &self.mode {
            footer.set_message(text.into());
        }
    }

    /// Removes the live lines (the permanent log stays).
    pub fn finish(&self) {
        if let Mode::Bars {
            header,
            instances,
            footer,
            ..
        } = &self.mode
        {
            header.finish_and_clear();
            for b in instances {
                b.finish_and_clear();
            }
            footer.finish_and_clear();
        }
    }

    fn header(&self, text: String) {
        if let Mode::Bars { header, .. } = &self.mode {
            header.set_message(text);
        }
    }

    fn instance_line(&self, i: &Instance, op: Option<&String>) {
        let Mode::Bars { instances, .. } = &self.mode else {
            return;
        };
        let Some(bar) = usize::try_from(i.ordinal)
            .ok()
            .and_then(|o| instances.get(o))
        else {
            return;
        };
        let role = match (i.role, i.source) {
            (Role::Primary, _) => "primary".to_owned(),
            (Role::Replica, Some(s)) => format!("replica of {s}"),
            (Role::Replica, None) => "replica (no source)".to_owned(),
        };
        let mut flags = Vec::new();
        if i.writable {
            flags.push("writable");
        }
        if i.fenced {
            flags.push("fenced");
        }
        if i.drained {
            flags.push("drained");
        }
        bar.set_message(format!(
            "n{}  {role:<20} {:<9} r{:<3} {:<22} {}{}",
            i.ordinal,
            i.version.to_string(),
            i.revision.number,
            i.health.to_string().chars().take(22).collect::<String>(),
            flags.join(" "),
            op.map(|o| format!("   ⟳ {o}")).unwrap_or_default(),
        ));
    }
}

fn step_line(outcome: &StepOutcome, took: Duration) -> Option<String> {
    let secs = took.as_secs_f64();
    match outcome {
        StepOutcome::Acted(a) => Some(format!("  ✓ {a} ({secs:.1}s)")),
        StepOutcome::Failed { action, error } => {
            Some(format!("  ✗ {action} failed after {secs:.1}s: {error}"))
        }
        StepOutcome::Done => Some("  ✓ every instance runs the target revision".into()),
        StepOutcome::Halted(r) => Some(format!("  ■ HALTED: {r}")),
        StepOutcome::Waited(_) => None,
        _ => Some(format!("  {outcome}")),
    }
}

impl Observer for Progress {
    fn event(&self, at: Instant, event: &Event) {
        match event {
            Event::Phase { name } => {
                {
                    let mut st = self.state();
                    st.phase = name.clone();
                    st.last_step = Some(at);
                    st.last_wait = None;
                }
                self.line(format!("▶ {name}"));
                self.header(name.clone());
            }
            Event::Step { outcome } => {
                let (took, wait_line, phase) = {
                    let mut st = self.state();
                    let took = at.saturating_duration_since(st.last_step.unwrap_or(at));
                    st.last_step = Some(at);
                    let wait_line = match outcome {
                        StepOutcome::Waited(reason) => {
                            // Once per reason, not per changing detail (a lag in seconds).
                            let key = reason.key();
                            (st.last_wait.as_ref() != Some(&key)).then(|| {
                                st.last_wait = Some(key);
                                reason.to_string()
                            })
                        }
                        _ => {
                            st.last_wait = None;
                            None
                        }
                    };
                    (took, wait_line, st.phase.clone())
                };
                if let Some(w) = wait_line {
                    self.line(format!("  … waiting: {w}"));
                }
                if let Some(l) = step_line(outcome, took) {
                    self.line(&l);
                    self.header(format!("{phase}: {}", l.trim_start()));
                }
            }
            Event::OpStarted { ordinal, op } => {
                self.state().ops.insert(*ordinal, op.to_string());
                if matches!(op, Op::Restart { .. } | Op::Recover) {
                    self.header(format!("instance {ordinal}: {op}"));
                }
            }
            Event::OpFinished {
                ordinal,
                op,
                took,
                error,
            } => {
                self.state().ops.remove(ordinal);
                let sub = matches!(
                    op,
                    Op::SettleReplicas
                        | Op::Fence
                        | Op::CatchUp { .. }
                        | Op::Promote
                        | Op::Repoint { .. }
                        | Op::Detach
                        | Op::ApplyReceived
                );
                match error {
                    Some(e) => self.line(format!(
                        "    instance {ordinal}: {op} failed after {:.2}s: {e}",
                        took.as_secs_f64()
                    )),
                    None if sub => self.line(format!(
                        "    · instance {ordinal}: {op} ({:.0} ms)",
                        took.as_secs_f64() * 1000.0
                    )),
                    None => {}
                }
            }
            Event::Observed { observed } => {
                let ops = self.state().ops.clone();
                for i in &observed.instances {
                    self.instance_line(i, ops.get(&i.ordinal));
                }
            }
            Event::Upgraded {
                ordinal,
                took,
                error,
            } => match error {
                None => self.line(format!(
                    "    · instance {ordinal}: mariadb-upgrade ({:.1}s)",
                    took.as_secs_f64()
                )),
                Some(e) => self.line(format!(
                    "    instance {ordinal}: mariadb-upgrade failed after {:.1}s: {e}",
                    took.as_secs_f64()
                )),
            },
            Event::Crashed { ordinal, status } => {
                let how = status
                    .as_deref()
                    .map_or(String::new(), |s| format!(" ({s})"));
                self.line(format!(
                    "  ! instance {ordinal}: the server process died{how}"
                ));
            }
            Event::Started {
                ordinal,
                revision,
                by,
                error,
            } => match (by, error) {
                (StartedBy::Restart, None) => {}
                (_, None) => self.line(format!(
                    "  ! instance {ordinal}: started again on {revision} by the {by}"
                )),
                (_, Some(e)) => self.line(format!(
                    "  ! instance {ordinal}: did not start on {revision} ({by}): {e}"
                )),
            },
        }
    }
}
