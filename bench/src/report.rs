//! The report: a header describing the machine and the command, then per backend a
//! table of ceilings and a table of scenarios with their ratios and targets.

use std::{path::Path, process::Command};

use crate::wrk::WrkResult;

/// One wrk run against a server, with the server's peak RSS during it.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub wrk: WrkResult,
    pub rss_mb: Option<f64>,
}

/// A scenario's outcome: a measurement, or why there is none.
pub type Outcome = Result<Measurement, String>;

/// Requests per second of a valid run, or why it cannot be used.
pub fn valid_rps(o: &Outcome) -> Result<f64, String> {
    match o {
        Ok(m) => match m.wrk.invalid_reason() {
            None => Ok(m.wrk.rps),
            Some(why) => Err(format!("INVALID ({why})")),
        },
        Err(e) => Err(format!("FAILED ({e})")),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    /// `≥ 0.80` for a ratio, `≤ 64 MB` for a value with a unit.
    fn text(self, unit: &str) -> String {
        let n = |t: f64| {
            if unit.is_empty() {
                format!("{t:.2}")
            } else {
                format!("{t}{unit}")
            }
        };
        match self {
            Target::None => "–".into(),
            Target::AtLeast(t) => format!("≥ {}", n(t)),
            Target::AtMost(t) => format!("≤ {}", n(t)),
        }
    }

    fn met(self, v: f64) -> &'static str {
        match self {
            Target::None => "–",
            Target::AtLeast(t) if v >= t => "met",
            Target::AtMost(t) if v <= t => "met",
            _ => "NOT MET",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub rps: String,
    pub p50: String,
    pub p99: String,
    pub rss: String,
    pub ratio: String,
    pub target: String,
    pub met: String,
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn mb(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

/// A row for a wrk outcome; `ratio` is the scenario's ratio (`None`: it has none) or
/// why it cannot be computed. `what` describes the ratio (`× static ceiling`).
pub fn row(
    scenario: &str,
    o: &Outcome,
    ratio: Option<Result<f64, String>>,
    what: &str,
    target: Target,
) -> Row {
    let mut r = Row {
        scenario: scenario.to_owned(),
        target: target.text(""),
        ..Row::default()
    };
    match o {
        Ok(m) => {
            r.p50 = ms(m.wrk.p50_ms);
            r.p99 = ms(m.wrk.p99_ms);
            r.rss = mb(m.rss_mb);
            r.rps = match m.wrk.invalid_reason() {
                None => format!("{:.0}", m.wrk.rps),
                Some(why) => format!("INVALID ({why}; {:.0} req/s)", m.wrk.rps),
            };
        }
        Err(e) => {
            r.rps = format!("FAILED: {e}");
            r.p50 = "–".into();
            r.p99 = "–".into();
            r.rss = "–".into();
        }
    }
    let own = valid_rps(o);
    match ratio {
        None => {
            r.ratio = "–".into();
            r.met = match own {
                Ok(_) => "–".into(),
                Err(_) => "INVALID".into(),
            };
        }
        Some(Ok(v)) if own.is_ok() => {
            // Three decimals when two would round onto the target and hide the verdict.
            let on_target = match target {
                Target::AtLeast(t) | Target::AtMost(t) => {
                    (v * 100.0).round() == (t * 100.0).round()
                }
                Target::None => false,
            };
            r.ratio = if on_target {
                format!("{v:.3}{what}")
            } else {
                format!("{v:.2}{what}")
            };
            r.met = target.met(v).into();
        }
        Some(Ok(_)) => {
            r.ratio = "–".into();
            r.met = "INVALID".into();
        }
        Some(Err(why)) => {
            r.ratio = format!("n/a: {why}");
            r.met = "INVALID".into();
        }
    }
    r
}

/// A row with a value that is not a wrk run (RSS, start time).
pub fn value_row(
    scenario: &str,
    shown: Row,
    value: Result<f64, String>,
    target: Target,
    unit: &str,
) -> Row {
    let mut r = Row {
        scenario: scenario.to_owned(),
        target: target.text(unit),
        ..shown
    };
    match value {
        Ok(v) => r.met = target.met(v).into(),
        Err(why) => {
            r.ratio = format!("n/a: {why}");
            r.met = "INVALID".into();
        }
    }
    r
}

pub struct Section {
    pub title: String,
    pub notes: Vec<String>,
    pub ceilings: Vec<Row>,
    pub rows: Vec<Row>,
}

fn table(out: &mut String, rows: &[Row], with_targets: bool) {
    if with_targets {
        out.push_str("| scenario | req/s | p50 | p99 | peak RSS MB | ratio | target | result |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
    } else {
        out.push_str("| ceiling | req/s | p50 | p99 | peak RSS MB |\n");
        out.push_str("|---|---:|---:|---:|---:|\n");
    }
    for r in rows {
        if with_targets {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario, r.rps, r.p50, r.p99, r.rss, r.ratio, r.target, r.met
            ));
        } else {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.scenario, r.rps, r.p50, r.p99, r.rss
            ));
        }
    }
}

pub fn render(header: &[String], sections: &[Section]) -> String {
    let mut out = String::from("# tally benchmark\n\n");
    for h in header {
        out.push_str(&format!("- {h}\n"));
    }
    for s in sections {
        out.push_str(&format!("\n## {}\n\n", s.title));
        for n in &s.notes {
            out.push_str(&format!("- {n}\n"));
        }
        if !s.ceilings.is_empty() {
            out.push('\n');
            table(&mut out, &s.ceilings, false);
        }
        if !s.rows.is_empty() {
            out.push('\n');
            table(&mut out, &s.rows, true);
        }
    }
    out
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    // `wrk --version` prints its banner and exits 1.
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn first_line(s: Option<String>) -> String {
    s.and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The machine, toolchain, commit and command line.
pub fn machine_header(repo: &Path) -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".into(), |s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |s| s.trim().to_owned());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let repo_s = repo.to_string_lossy();
    let commit = command_output("git", &["-C", &repo_s, "rev-parse", "--short=12", "HEAD"])
        .unwrap_or_else(|| "unknown".into());
    let dirty = command_output("git", &["-C", &repo_s, "status", "--porcelain"])
        .map_or("", |_| " (with uncommitted changes)");
    let args: Vec<String> = std::env::args().collect();
    vec![
        format!("date: {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")),
        format!("command: `{}`", args.join(" ")),
        format!("machine: {nproc} CPUs ({cpu}), {ram} RAM, Linux {kernel}"),
        format!(
            "rustc: {}",
            first_line(command_output("rustc", &["--version"]))
        ),
        format!(
            "load generator: {}",
            first_line(command_output("wrk", &["--version"]))
        ),
        format!("git commit: {commit}{dirty}"),
    ]
}
