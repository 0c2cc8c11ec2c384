//! The rollout report: an SVG chart of write throughput and p99 write
//! latency over time with the phases, switchovers and restarts marked, an
//! HTML page around it with the summary, and the summary as JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plotters::prelude::*;
use switchyard_testbed::ledger::LedgerSnapshot;

use crate::error::{Error, Result};
use crate::summary::Summary;
use crate::timeline::{Event, Op, StartedBy, Timed};

/// The files a report was written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    /// The chart.
    pub svg: PathBuf,
    /// The page (chart and summary).
    pub html: PathBuf,
    /// The summary as JSON.
    pub json: PathBuf,
}

/// The width of one throughput bucket.
const BUCKET: Duration = Duration::from_millis(500);
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 640;

/// Writes `report.svg`, `report.html` and `summary.json` into `dir`
/// (created if missing). Times are placed after `origin`, the ledger's start.
pub fn write(
    dir: &Path,
    summary: &Summary,
    ledger: &LedgerSnapshot,
    events: &[Timed],
    origin: Instant,
) -> Result<ReportFiles> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::StateIo {
            path,
            action,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create the report folder", dir))?;
    let files = ReportFiles {
        svg: dir.join("report.svg"),
        html: dir.join("report.html"),
        json: dir.join("summary.json"),
    };
    let svg = chart(summary, ledger, events, origin)?;
    std::fs::write(&files.svg, &svg).map_err(io("write", &files.svg))?;
    std::fs::write(&files.html, page(summary, &svg)).map_err(io("write", &files.html))?;
    let json = serde_json::to_vec_pretty(summary).map_err(|source| Error::StateFormat {
        path: files.json.clone(),
        source,
    })?;
    std::fs::write(&files.json, json).map_err(io("write", &files.json))?;
    Ok(files)
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing the report chart failed: {e}"))
}

/// The chart as SVG text.
pub fn chart(
    summary: &Summary,
    ledger: &LedgerSnapshot,
    events: &[Timed],
    origin: Instant,
) -> Result<String> {
    let series = ledger.time_series(BUCKET);
    let per_sec = 1.0 / BUCKET.as_secs_f64();
    let throughput: Vec<(f64, f64)> = series
        .iter()
        .map(|b| (b.start_us as f64 / 1e6, b.acknowledged as f64 * per_sec))
        .collect();
    let latency: Vec<(f64, f64)> = series
        .iter()
        .filter(|b| b.acknowledged > 0)
        .map(|b| (b.start_us as f64 / 1e6, b.p99_latency_us as f64 / 1000.0))
        .collect();
    // Room on the right for the labels of the last phase and switchover.
    let end = series
        .last()
        .map_or(1.0, |b| b.start_us as f64 / 1e6 + BUCKET.as_secs_f64())
        .max(1.0)
        * 1.12;
    let max_rate = throughput.iter().map(|p| p.1).fold(10.0, f64::max) * 1.15;
    let max_latency = latency.iter().map(|p| p.1).fold(5.0, f64::max) * 1.15;
    let off = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
    // Each restart as a span from its start to the server being ready;
    // the supervisor's starts (after a crash) as spans from the crash.
    let mut restarts: Vec<(f64, f64, u32)> = Vec::new();
    let mut open: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
    for t in events {
        match &t.event {
            Event::OpStarted {
                ordinal,
                op: Op::Restart { .. } | Op::Recover,
            }
            | Event::Crashed { ordinal, .. } => {
                open.entry(*ordinal).or_insert(off(t.at));
            }
            Event::OpFinished {
                ordinal,
                op: Op::Restart { .. } | Op::Recover,
                ..
            }
            | Event::Started {
                ordinal,
                by: StartedBy::Supervisor,
                ..
            } => {
                if let Some(s) = open.remove(ordinal) {
                    restarts.push((s, off(t.at), *ordinal));
                }
            }
            _ => {}
        }
    }
    let phases: Vec<(f64, f64, &str)> = summary
        .phases
        .iter()
        .map(|p| {
            let s = p.start.as_secs_f64();
            (s, s + p.duration.as_secs_f64(), p.name.as_str())
        })
        .collect();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let (top, bottom) = root.split_vertically(HEIGHT * 55 / 100);
        let shade = |i: usize| {
            if i.is_multiple_of(2) {
                RGBColor(225, 236, 250).mix(0.8)
            } else {
                RGBColor(232, 245, 228).mix(0.8)
            }
        };

        let mut upper = ChartBuilder::on(&top)
            .caption(
                "switchyard rollout: acknowledged writes per second",
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(20)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..max_rate)
            .map_err(chart_error)?;
        upper
            .configure_mesh()
            .y_desc("writes/s")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        for (i, (s, e, name)) in phases.iter().enumerate() {
            upper
                .draw_series(std::iter::once(Rectangle::new(
                    [(*s, 0.0), (*e, max_rate)],
                    shade(i).filled(),
                )))
                .map_err(chart_error)?;
            // Alternate two rows so that a short phase's label does not
            // run into the next one's.
            let row = if i.is_multiple_of(2) { 0.97 } else { 0.91 };
            let label: String = name.chars().take(70).collect();
            upper
                .draw_series(std::iter::once(Text::new(
                    label,
                    (*s + 0.2, max_rate * row),
                    ("sans-serif", 13).into_font().color(&BLACK.mix(0.8)),
                )))
                .map_err(chart_error)?;
        }
        upper
            .draw_series(LineSeries::new(throughput, BLUE.stroke_width(2)))
            .map_err(chart_error)?
            .label("writes/s")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        for s in &summary.switchovers {
            let x = s.at.as_secs_f64();
            upper
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, max_rate * 0.84)],
                    RED.stroke_width(2),
                )))
                .map_err(chart_error)?;
            let gap = s.write_gap.map_or_else(String::new, |g| {
                format!(" gap {:.0} ms", g.as_secs_f64() * 1e3)
            });
            upper
                .draw_series(std::iter::once(Text::new(
                    format!("switchover {}→{}{gap}", s.from, s.to),
                    (x + 0.2, max_rate * 0.8),
                    ("sans-serif", 12).into_font().color(&RED),
                )))
                .map_err(chart_error)?;
        }
        let orange = RGBColor(230, 120, 0);
        upper
            .draw_series(restarts.iter().map(|(s, e, _)| {
                Rectangle::new(
                    [(*s, max_rate * 0.02), (e.max(s + 0.15), max_rate * 0.06)],
                    orange.filled(),
                )
            }))
            .map_err(chart_error)?
            .label("instance restarting")
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 20, y + 3)], orange.filled()));
        upper
            .draw_series(restarts.iter().map(|(s, _, o)| {
                Text::new(
                    format!("n{o}"),
                    (*s, max_rate * 0.13),
                    ("sans-serif", 11).into_font().color(&RGBColor(160, 80, 0)),
                )
            }))
            .map_err(chart_error)?;
        upper
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(chart_error)?;

        let mut lower = ChartBuilder::on(&bottom)
            .caption("p99 write latency per 0.5 s", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..max_latency)
            .map_err(chart_error)?;
        lower
            .configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc("ms")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        for (i, (s, e, _)) in phases.iter().enumerate() {
            lower
                .draw_series(std::iter::once(Rectangle::new(
                    [(*s, 0.0), (*e, max_latency)],
                    shade(i).filled(),
                )))
                .map_err(chart_error)?;
        }
        lower
            .draw_series(LineSeries::new(latency, MAGENTA.stroke_width(2)))
            .map_err(chart_error)?;
        for s in &summary.switchovers {
            let x = s.at.as_secs_f64();
            lower
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, max_latency)],
                    RED.stroke_width(2),
                )))
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn page(summary: &Summary, svg: &str) -> String {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>switchyard rollout report</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:1250px}\
         table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}\
         td.n{text-align:right}tr.phase td{font-weight:bold;border-top:1px solid #999}\
         .bad{color:#b00}.ok{color:#070}pre{background:#f6f6f6;padding:1em}</style>\
         </head><body>\n<h1>switchyard rollout report</h1>\n",
    );
    let verdict = if summary.succeeded() {
        "<p class=\"ok\">Every phase finished; no acknowledged write was lost.</p>"
    } else {
        "<p class=\"bad\">The rollout did not finish cleanly or lost acknowledged writes.</p>"
    };
    html.push_str(verdict);
    let _ = writeln!(
        html,
        "<p>{} writes acknowledged, <b>{} lost</b>, {} with unknown outcome; {} restarts; \
         {} switchovers; wall time {:.1} s.</p>",
        summary.acknowledged,
        summary.lost,
        summary.unknown_outcome,
        summary.restarts,
        summary.switchovers.len(),
        summary.wall.as_secs_f64()
    );
    html.push_str(svg);
    html.push_str("\n<h2>Steps</h2>\n<table><tr><th>phase / step</th><th>took</th></tr>\n");
    for p in &summary.phases {
        let _ = writeln!(
            html,
            "<tr class=\"phase\"><td>{} ({} restarts, {} switchovers, {})</td><td class=\"n\">{:.1} s</td></tr>",
            escape(&p.name),
            p.restarts,
            p.switchovers,
            escape(&p.outcome),
            p.duration.as_secs_f64()
        );
        for s in &p.steps {
            let _ = writeln!(
                html,
                "<tr><td{}>{}</td><td class=\"n\">{:.1} s</td></tr>",
                if s.ok { "" } else { " class=\"bad\"" },
                escape(&s.what),
                s.took.as_secs_f64()
            );
        }
    }
    html.push_str("</table>\n<h2>Switchovers</h2>\n<table><tr><th>from → to</th><th>phase</th><th>fence to promotion</th><th>write gap</th></tr>\n");
    for s in &summary.switchovers {
        let _ = writeln!(
            html,
            "<tr><td>{} → {}</td><td>{}</td><td class=\"n\">{:.0} ms</td><td class=\"n\">{}</td></tr>",
            s.from,
            s.to,
            escape(&s.phase),
            s.fenced_for.as_secs_f64() * 1e3,
            s.write_gap.map_or_else(
                || "n/a".into(),
                |g| format!("{:.0} ms", g.as_secs_f64() * 1e3)
            )
        );
    }
    html.push_str("</table>\n<h2>Revisions</h2>\n<table><tr><th>revision</th><th>hash</th><th>version</th><th>changes</th></tr>\n");
    for r in &summary.revisions {
        let _ = writeln!(
            html,
            "<tr><td>r{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            r.number,
            escape(&r.hash),
            escape(&r.version),
            escape(&r.changes)
        );
    }
    let _ = write!(
        html,
        "</table>\n<h2>Summary</h2>\n<pre>{}</pre>\n</body></html>\n",
        escape(&summary.to_string())
    );
    html
}
