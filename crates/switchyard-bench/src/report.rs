//! What a benchmark prints and records: markdown tables (padded so they read in a terminal
//! too), the machine, the date and the load average.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::stats::{Summary, ms};

/// Targets for write unavailability and lost writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Targets {
    /// The median must be below this.
    pub p50: Duration,
    /// The largest must be below this.
    pub max: Duration,
}

/// The switchover targets of issue 3: p50 under 150 ms, max under 500 ms (and no lost write).
pub const SWITCHOVER_TARGETS: Targets = Targets {
    p50: Duration::from_millis(150),
    max: Duration::from_millis(500),
};

/// One row of a results table: a flavor and a method, with the write unavailability of its
/// runs and what happened to the writes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResultRow {
    /// The server, for example `MariaDB 10.11.14`.
    pub flavor: String,
    /// How the primary was taken out, for example `switchover`.
    pub method: String,
    /// Write unavailability per run.
    pub gap: Summary,
    /// Acknowledged writes missing on some instance afterwards.
    pub lost: usize,
    /// Writes whose outcome the client could not know (the connection broke after sending).
    pub unknown: usize,
}

impl ResultRow {
    /// Whether the row meets `targets`: (p50, max, zero lost).
    pub fn verdicts(&self, targets: &Targets) -> [bool; 3] {
        [
            self.gap.p50 < targets.p50,
            self.gap.max < targets.max,
            self.lost == 0,
        ]
    }

    /// Whether every target is met.
    pub fn passes(&self, targets: &Targets) -> bool {
        self.verdicts(targets).iter().all(|ok| *ok)
    }
}

fn verdict(ok: bool) -> String {
    if ok { "pass" } else { "**FAIL**" }.to_owned()
}

/// The results table: flavor, method, runs, p50/p99/max write unavailability (ms), lost writes,
/// unknown outcomes, and pass/fail against `targets`.
pub fn results_table(rows: &[ResultRow], targets: &Targets) -> String {
    let header = [
        "flavor".to_owned(),
        "method".to_owned(),
        "runs".to_owned(),
        "p50 ms".to_owned(),
        "p99 ms".to_owned(),
        "max ms".to_owned(),
        "lost writes".to_owned(),
        "unknown outcomes".to_owned(),
        format!("p50 < {}", ms(targets.p50)),
        format!("max < {}", ms(targets.max)),
        "zero lost".to_owned(),
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let [p50, max, lost] = r.verdicts(targets);
            vec![
                r.flavor.clone(),
                r.method.clone(),
                r.gap.count.to_string(),
                ms(r.gap.p50),
                ms(r.gap.p99),
                ms(r.gap.max),
                r.lost.to_string(),
                r.unknown.to_string(),
                verdict(p50),
                verdict(max),
                verdict(lost),
            ]
        })
        .collect();
    table(&header, 2, &body)
}

/// A markdown table with padded columns; columns from `numeric_from` on are right-aligned.
pub fn table(header: &[String], numeric_from: usize, rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count().max(3)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i >= numeric_from {
                let _ = write!(out, " {cell:>w$} |");
            } else {
                let _ = write!(out, " {cell:<w$} |");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header);
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        if i >= numeric_from {
            let _ = write!(out, " {}: |", "-".repeat(w - 1));
        } else {
            let _ = write!(out, " {} |", "-".repeat(*w));
        }
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The machine a benchmark ran on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Machine {
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// CPUs available to this process.
    pub cores: usize,
    /// Memory, GiB (`/proc/meminfo`).
    pub memory_gib: f64,
    /// The kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description from `/proc` (unknown parts stay empty or zero).
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }

    /// One line: cores, CPU, memory, kernel.
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.0} GiB RAM, Linux {}, loopback only",
            self.cores,
            if self.cpu.is_empty() {
                "unknown CPU"
            } else {
                &self.cpu
            },
            self.memory_gib,
            self.kernel
        )
    }
}

/// The 1, 5 and 15 minute load averages.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LoadAverage(pub [f64; 3]);

impl LoadAverage {
    /// The current load average, from `/proc/loadavg`.
    pub fn now() -> Option<Self> {
        parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
    }
}

impl std::fmt::Display for LoadAverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a:.2}, {b:.2}, {c:.2}")
    }
}

/// Parses the first three fields of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next()?.ok();
    Some(LoadAverage([next()?, next()?, next()?]))
}

/// The UTC date of `t` as `YYYY-MM-DD`.
pub fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(0),
        u32::try_from(d).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p50: u64, max: u64, lost: usize) -> ResultRow {
        let d = Duration::from_millis;
        ResultRow {
            flavor: "MariaDB 10.11.14".to_owned(),
            method: "switchover".to_owned(),
            gap: Summary {
                count: 20,
                p50: d(p50),
                p99: d(max),
                max: d(max),
            },
            lost,
            unknown: 7,
        }
    }

    #[test]
    fn results_table_shows_figures_and_verdicts() {
        let rows = [row(95, 180, 0), row(2400, 5100, 3)];
        let text = results_table(&rows, &SWITCHOVER_TARGETS);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("p50 < 150") && lines[0].contains("max < 500"));
        let cells = |line: &str| -> Vec<String> {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        };
        assert_eq!(
            cells(lines[2]),
            [
                "MariaDB 10.11.14",
                "switchover",
                "20",
                "95",
                "180",
                "180",
                "0",
                "7",
                "pass",
                "pass",
                "pass"
            ]
        );
        assert_eq!(cells(lines[3])[8..], ["**FAIL**", "**FAIL**", "**FAIL**"]);
        // Every line has the same width, so the table also reads in a terminal.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
        // Numeric columns are right-aligned in markdown.
        assert!(lines[1].contains("-: |"));
    }

    #[test]
    fn targets_are_strict_bounds() {
        assert!(row(149, 499, 0).passes(&SWITCHOVER_TARGETS));
        assert_eq!(
            row(150, 500, 0).verdicts(&SWITCHOVER_TARGETS),
            [false, false, true]
        );
        assert!(!row(10, 20, 1).passes(&SWITCHOVER_TARGETS));
    }

    #[test]
    fn loadavg_parses() {
        let l = parse_loadavg("2.91 6.65 7.05 3/812 123456\n").expect("parses");
        assert_eq!(l.0, [2.91, 6.65, 7.05]);
        assert_eq!(l.to_string(), "2.91, 6.65, 7.05");
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        let at = |secs: u64| utc_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_709_251_199), "2024-02-29");
        assert_eq!(at(1_709_251_200), "2024-03-01");
        assert_eq!(at(1_798_761_599), "2026-12-31");
    }
}

/// What a recorded section says beside its table: the command, the date, the machine and the
/// load average around the run.
#[derive(Clone, Debug)]
pub struct SectionContext {
    /// The command that reproduces the measurement.
    pub command: String,
    /// The UTC date.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// The load average when the benchmark started.
    pub load_before: Option<LoadAverage>,
    /// The load average when it ended.
    pub load_after: Option<LoadAverage>,
}

impl SectionContext {
    /// The section's first lines: the command, then when, on what and under which load
    /// (each followed by a blank line).
    pub fn preamble(&self) -> String {
        let load =
            |l: Option<LoadAverage>| l.map_or_else(|| "unknown".to_owned(), |l| l.to_string());
        format!(
            "Command: `{}`\n\nMeasured {} (UTC) on {}. Load average (1, 5, 15 min): {} at the \
             start, {} at the end.\n\n",
            self.command,
            self.date,
            self.machine.describe(),
            load(self.load_before),
            load(self.load_after),
        )
    }
}
