//! The closing summary of a rollout: each phase and step with its duration,
//! each switchover with the write gap the load saw, restarts, the revision
//! history, and the writes acknowledged and lost.

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_plan::engine::StepOutcome;
use switchyard_plan::history::History;
use switchyard_testbed::ledger::{CheckReport, LatencySummary, LedgerSnapshot};

use crate::monitor::MonitorReport;
use crate::timeline::{Event, Op, Timed};

/// One engine step that acted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepLine {
    /// The action, in words.
    pub what: String,
    /// How long the step took (observe, decide, act, record).
    pub took: Duration,
    /// Whether it succeeded.
    pub ok: bool,
}

/// One phase (an upgrade, a configuration change).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseSummary {
    /// Its name.
    pub name: String,
    /// When it began, after the origin.
    pub start: Duration,
    /// How long it took, to its last step.
    pub duration: Duration,
    /// The steps that acted, in order.
    pub steps: Vec<StepLine>,
    /// Time spent in steps that waited.
    pub waited: Duration,
    /// Server processes started in the phase.
    pub restarts: u32,
    /// Switchovers in the phase.
    pub switchovers: usize,
    /// How the phase ended: `done`, `halted: ...`, or `unfinished`.
    pub outcome: String,
}

/// One switchover and what the load saw of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwitchoverGap {
    /// The phase it belongs to.
    pub phase: String,
    /// The old primary.
    pub from: u32,
    /// The new primary.
    pub to: u32,
    /// When the fence began, after the origin.
    pub at: Duration,
    /// From the start of the fence to the end of the promotion.
    pub fenced_for: Duration,
    /// The longest stretch without an acknowledged write around it.
    pub write_gap: Option<Duration>,
}

/// One revision of the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RevisionLine {
    /// Its number.
    pub number: u64,
    /// The start of its content hash.
    pub hash: String,
    /// Its server version.
    pub version: String,
    /// What changed from the revision before it.
    pub changes: String,
}

/// What a summary is built from. Times are placed on one axis starting at
/// `origin` (the load's ledger start, so gaps and steps line up).
#[derive(Debug)]
pub struct SummaryInput<'a> {
    /// The timeline's events.
    pub events: &'a [Timed],
    /// The start of the time axis.
    pub origin: Instant,
    /// The load's writes, if a load ran.
    pub ledger: Option<&'a LedgerSnapshot>,
    /// The check of the acknowledged writes on every instance.
    pub check: Option<&'a CheckReport>,
    /// Reader errors.
    pub read_errors: usize,
    /// The writable-instance monitor's report.
    pub monitor: Option<&'a MonitorReport>,
    /// The cluster's revision history.
    pub history: Option<&'a History>,
    /// The whole run's wall time.
    pub wall: Duration,
}

/// The closing summary. `Display` renders it as a table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Each phase.
    pub phases: Vec<PhaseSummary>,
    /// Each switchover.
    pub switchovers: Vec<SwitchoverGap>,
    /// Server processes started in all phases.
    pub restarts: u32,
    /// Writes acknowledged by the cluster.
    pub acknowledged: usize,
    /// Acknowledged writes missing on some instance at the end.
    pub lost: usize,
    /// Writes whose outcome the client could not know (connection cut).
    pub unknown_outcome: usize,
    /// Writer errors (refused connections during switchovers, ...).
    pub write_errors: usize,
    /// Reader errors.
    pub read_errors: usize,
    /// Write latency over the whole load.
    pub write_latency: LatencySummary,
    /// The most instances the monitor found writable at once.
    pub max_writable: Option<usize>,
    /// The revision history.
    pub revisions: Vec<RevisionLine>,
    /// The whole run's wall time.
    pub wall: Duration,
}

impl Summary {
    /// Builds the summary.
    pub fn build(input: &SummaryInput<'_>) -> Summary {
        let off = |t: Instant| t.saturating_duration_since(input.origin);
        let mut phases: Vec<PhaseSummary> = Vec::new();
        let mut switchovers = Vec::new();
        let mut last_step: Option<Instant> = None;
        let mut fence: Option<(u32, Instant)> = None;
        for t in input.events {
            match &t.event {
                Event::Phase { name } => {
                    phases.push(PhaseSummary {
                        name: name.clone(),
                        start: off(t.at),
                        duration: Duration::ZERO,
                        steps: Vec::new(),
                        waited: Duration::ZERO,
                        restarts: 0,
                        switchovers: 0,
                        outcome: "unfinished".into(),
                    });
                    last_step = Some(t.at);
                }
                Event::Step { outcome } => {
                    let took = t.at.saturating_duration_since(last_step.unwrap_or(t.at));
                    last_step = Some(t.at);
                    let Some(p) = phases.last_mut() else { continue };
                    p.duration = off(t.at).saturating_sub(p.start);
                    match outcome {
                        StepOutcome::Acted(a) => p.steps.push(StepLine {
                            what: a.to_string(),
                            took,
                            ok: true,
                        }),
                        StepOutcome::Failed { action, error } => p.steps.push(StepLine {
                            what: format!("{action}: {error}"),
                            took,
                            ok: false,
                        }),
                        StepOutcome::Waited(_) => p.waited += took,
                        StepOutcome::Done => p.outcome = "done".into(),
                        StepOutcome::Halted(r) => p.outcome = format!("halted: {r}"),
                        _ => {}
                    }
                }
                Event::Started { error: None, .. } => {
                    if let Some(p) = phases.last_mut() {
                        p.restarts += 1;
                    }
                }
                Event::OpStarted {
                    ordinal,
                    op: Op::Fence,
                } => fence = Some((*ordinal, t.at)),
                Event::OpFinished {
                    op: Op::Unfence, ..
                } => fence = None,
                Event::OpFinished {
                    ordinal,
                    op: Op::Promote,
                    error: None,
                    ..
                } => {
                    let Some((from, began)) = fence.take() else {
                        continue;
                    };
                    let phase = phases.last_mut();
                    let name = phase.as_ref().map(|p| p.name.clone()).unwrap_or_default();
                    if let Some(p) = phase {
                        p.switchovers += 1;
                    }
                    let write_gap = input
                        .ledger
                        .and_then(|l| l.longest_gap_in(off(began)..off(t.at)))
                        .map(|g| g.length());
                    switchovers.push(SwitchoverGap {
                        phase: name,
                        from,
                        to: *ordinal,
                        at: off(began),
                        fenced_for: t.at.saturating_duration_since(began),
                        write_gap,
                    });
                }
                _ => {}
            }
        }
        let revisions = input
            .history
            .map(|h| {
                h.with_changes()
                    .into_iter()
                    .map(|(e, changes)| RevisionLine {
                        number: e.revision.number,
                        hash: e.revision.short_hash().to_owned(),
                        version: e.version.to_string(),
                        changes: if changes.is_empty() {
                            let config: Vec<String> =
                                e.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            if config.is_empty() {
                                "first revision".into()
                            } else {
                                format!("first revision: {}", config.join(", "))
                            }
                        } else {
                            changes
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        Summary {
            restarts: phases.iter().map(|p| p.restarts).sum(),
            phases,
            switchovers,
            acknowledged: input.ledger.map_or(0, |l| l.acked.len()),
            lost: input.check.map_or(0, CheckReport::total_missing),
            unknown_outcome: input.ledger.map_or(0, |l| l.unknown.len()),
            write_errors: input.ledger.map_or(0, |l| l.errors.len()),
            read_errors: input.read_errors,
            write_latency: input
                .ledger
                .map(LedgerSnapshot::latency)
                .unwrap_or_default(),
            max_writable: input.monitor.map(|m| m.max_writable),
            revisions,
            wall: input.wall,
        }
    }

    /// Whether every phase finished and no acknowledged write was lost.
    pub fn succeeded(&self) -> bool {
        self.lost == 0 && self.phases.iter().all(|p| p.outcome == "done")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const W: usize = 74;
        let rule = "─".repeat(W + 10);
        writeln!(f, "{rule}")?;
        writeln!(f, "{:<W$} {:>9}", "phase / step", "took")?;
        writeln!(f, "{rule}")?;
        for p in &self.phases {
            let mut head = format!(
                "{} — {} restart{}, {} switchover{}",
                p.name,
                p.restarts,
                if p.restarts == 1 { "" } else { "s" },
                p.switchovers,
                if p.switchovers == 1 { "" } else { "s" }
            );
            if p.outcome != "done" {
                let _ = write!(head, " — {}", p.outcome);
            }
            writeln!(f, "{:<W$} {:>9}", truncate(&head, W), secs(p.duration))?;
            for s in &p.steps {
                let mark = if s.ok { ' ' } else { '✗' };
                let what = truncate(&format!("  {mark} {}", s.what), W);
                writeln!(f, "{what:<W$} {:>9}", secs(s.took))?;
            }
            if !p.waited.is_zero() {
                writeln!(
                    f,
                    "{:<W$} {:>9}",
                    "    (waiting: instances starting, replicas catching up)",
                    secs(p.waited)
                )?;
            }
        }
        writeln!(f, "{rule}")?;
        if !self.switchovers.is_empty() {
            writeln!(
                f,
                "switchovers (fence to promotion; longest write gap around it)"
            )?;
            for s in &self.switchovers {
                writeln!(
                    f,
                    "  {} → {} in {:<34} fenced {:>7}   write gap {:>7}",
                    s.from,
                    s.to,
                    truncate(&s.phase, 34),
                    ms(s.fenced_for),
                    s.write_gap.map_or_else(|| "n/a".into(), ms)
                )?;
            }
        }
        if !self.revisions.is_empty() {
            writeln!(f, "revisions")?;
            for r in &self.revisions {
                writeln!(
                    f,
                    "  r{:<3} {}  {:<9} {}",
                    r.number,
                    r.hash,
                    r.version,
                    truncate(&r.changes, 60)
                )?;
            }
        }
        writeln!(f, "{rule}")?;
        writeln!(
            f,
            "restarts {}   writes acknowledged {}   writes lost {}   unknown outcome {}",
            self.restarts, self.acknowledged, self.lost, self.unknown_outcome
        )?;
        writeln!(
            f,
            "write errors {}   read errors {}   write latency p50 {:.1} ms, p99 {:.1} ms{}",
            self.write_errors,
            self.read_errors,
            self.write_latency.p50_us as f64 / 1000.0,
            self.write_latency.p99_us as f64 / 1000.0,
            self.max_writable
                .map(|m| format!("   most writable at once {m}"))
                .unwrap_or_default()
        )?;
        writeln!(f, "wall time {}", secs(self.wall))?;
        writeln!(f, "{rule}")
    }
}
