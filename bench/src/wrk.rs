//! wrk: lua scripts, one run, and parsing its report.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::proc::Child;

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// "Non-2xx or 3xx responses".
    pub non_2xx: u64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
}

impl WrkResult {
    /// A run with any non-2xx/3xx answer or socket error, or no request at all, measured
    /// something else than the scenario: it is reported as INVALID, never as a number.
    pub fn invalid_reason(&self) -> Option<String> {
        if self.requests == 0 {
            return Some("no requests completed".into());
        }
        let mut why = vec![];
        if self.non_2xx > 0 {
            why.push(format!("{} non-2xx", self.non_2xx));
        }
        if self.socket_errors > 0 {
            why.push(format!("{} socket errors", self.socket_errors));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

/// Milliseconds of a wrk time such as `812.00us`, `1.23ms`, `2.01s` or `1.00m`.
fn parse_time_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(n * factor)
}

/// Parses wrk's report (run with `--latency`).
pub fn parse(out: &str) -> Result<WrkResult, String> {
    let mut rps = None;
    let mut requests = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    let mut in_distribution = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            let mut parts = t.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("50%"), Some(v)) => p50 = parse_time_ms(v),
                (Some("99%"), Some(v)) => p99 = parse_time_ms(v),
                (Some(p), Some(_)) if p.ends_with('%') => {}
                _ => in_distribution = false,
            }
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().map_err(|_| format!("bad line {t:?}"))?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 12"
            for part in v.split(',') {
                let n: u64 = part
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("bad line {t:?}"))?;
                socket_errors += n;
            }
        } else if t.contains(" requests in ") {
            requests = t.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    let missing = |what: &str| format!("wrk output has no {what}:\n{out}");
    Ok(WrkResult {
        requests: requests.ok_or_else(|| missing("request count"))?,
        rps: rps.ok_or_else(|| missing("Requests/sec"))?,
        p50_ms: p50.ok_or_else(|| missing("50% latency"))?,
        p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx,
        socket_errors,
    })
}

/// Load settings shared by every run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration: u64,
}

/// Runs wrk against 127.0.0.1:`port` with `script`; its output goes to `<script>.out`.
/// wrk stops by itself after the duration; it is killed if it overruns by 60 s.
pub async fn run(load: Load, port: u16, script: &Path) -> Result<WrkResult, String> {
    let out = script.with_extension("out");
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections.max(load.threads)))
        .arg(format!("-d{}s", load.duration))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"));
    let mut child = Child::spawn("wrk", cmd, &out)?;
    let deadline = Instant::now() + Duration::from_secs(load.duration + 60);
    let status = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            return Err("wrk overran its duration by a minute; killed".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if !status.success() {
        return Err(format!("wrk failed ({status}):\n{text}"));
    }
    parse(&text)
}

/// Lua scripts; each one is written to a file in the run's temp dir.
pub struct Scripts {
    dir: PathBuf,
    threads: u32,
}

/// Per-thread id and counter: `setup` runs in wrk's main state and gives every thread
/// its index; `init` seeds the thread's random generator.
const PRELUDE: &str = r#"
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
local counter = 0
function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end
"#;

fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn lua_array(items: &[String]) -> String {
    let mut out = String::from("{\n");
    for t in items {
        out.push_str(&lua_string(t));
        out.push_str(",\n");
    }
    out.push('}');
    out
}

impl Scripts {
    pub fn new(dir: &Path, threads: u32) -> Scripts {
        Scripts {
            dir: dir.to_owned(),
            threads: threads.max(1),
        }
    }

    fn write(&self, name: &str, body: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("{name}.lua"));
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// The same GET every time (built once by wrk, no lua per request).
    pub fn get(&self, name: &str, path: &str, token: Option<&str>) -> Result<PathBuf, String> {
        let mut s = format!("wrk.method = \"GET\"\nwrk.path = {}\n", lua_string(path));
        if let Some(t) = token {
            s.push_str(&format!(
                "wrk.headers[\"Authorization\"] = {}\n",
                lua_string(&format!("Bearer {t}"))
            ));
        }
        self.write(name, &s)
    }

    /// `GET {prefix}{random 1..=n}`.
    pub fn get_random_id(&self, name: &str, prefix: &str, n: u32) -> Result<PathBuf, String> {
        let s = format!(
            "{PRELUDE}\nfunction request()\n  return wrk.format(\"GET\", {} .. math.random(1, {n}))\nend\n",
            lua_string(prefix)
        );
        self.write(name, &s)
    }

    fn with_tokens(&self, tokens: &[String], body: &str) -> String {
        format!(
            "{PRELUDE}\nlocal tokens = {}\nlocal nthreads = {}\nlocal function next_token()\n  counter = counter + 1\n  return tokens[(counter * nthreads + tid) % #tokens + 1]\nend\n{body}",
            lua_array(tokens),
            self.threads
        )
    }

    /// `PUT …/ratings/me` with random stars, each request by the next reader.
    pub fn put_rating(
        &self,
        name: &str,
        article: &str,
        tokens: &[String],
    ) -> Result<PathBuf, String> {
        let body = format!(
            r#"
function request()
  local t = next_token()
  return wrk.format("PUT", "/api/v1/articles/{article}/ratings/me",
    {{ ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }},
    '{{"stars":' .. math.random(1, 5) .. '}}')
end
"#
        );
        self.write(name, &self.with_tokens(tokens, &body))
    }

    /// `PUT /comments/{id}/vote`, `up` or `down` at random on one of `comments` at
    /// random, each request by the next reader.
    pub fn put_vote(
        &self,
        name: &str,
        comments: &[String],
        tokens: &[String],
    ) -> Result<PathBuf, String> {
        let ids: Vec<String> = comments.iter().map(|c| format!("\"{c}\"")).collect();
        let body = format!(
            r#"
local comment_ids = {{ {} }}
function request()
  local t = next_token()
  local id = comment_ids[math.random(1, #comment_ids)]
  local v = "up"
  if math.random(1, 2) == 1 then v = "down" end
  return wrk.format("PUT", "/api/v1/comments/" .. id .. "/vote",
    {{ ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }},
    '{{"vote":"' .. v .. '"}}')
end
"#,
            ids.join(", ")
        );
        self.write(name, &self.with_tokens(tokens, &body))
    }

    /// `POST …/comments`, each request by the next reader with a unique body.
    pub fn post_comment(
        &self,
        name: &str,
        article: &str,
        tokens: &[String],
    ) -> Result<PathBuf, String> {
        let body = format!(
            r#"
function request()
  local t = next_token()
  local text = "Benchmark comment " .. tid .. "-" .. counter .. "-" .. math.random(1, 1000000000) .. ": thanks, this helped."
  return wrk.format("POST", "/api/v1/articles/{article}/comments",
    {{ ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }},
    '{{"body":"' .. text .. '"}}')
end
"#
        );
        self.write(name, &self.with_tokens(tokens, &body))
    }

    /// 90 % `GET /articles/a-N/rating`, 10 % `PUT /articles/a-N/ratings/me`, N random in
    /// 1..=`articles`.
    pub fn mixed(&self, name: &str, articles: u32, tokens: &[String]) -> Result<PathBuf, String> {
        let body = format!(
            r#"
function request()
  local a = "/api/v1/articles/a-" .. math.random(1, {articles})
  if math.random(1, 100) <= 10 then
    local t = next_token()
    return wrk.format("PUT", a .. "/ratings/me",
      {{ ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }},
      '{{"stars":' .. math.random(1, 5) .. '}}')
  end
  return wrk.format("GET", a .. "/rating")
end
"#
        );
        self.write(name, &self.with_tokens(tokens, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of wrk 4.1.0 (Debian) against `tally-bench ceiling-static`.
    const CLEAN: &str = "Running 3s test @ http://127.0.0.1:41057
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms    1.26ms  23.93ms   96.05%
    Req/Sec    31.73k     3.56k   37.99k    73.33%
  Latency Distribution
     50%  841.00us
     75%    1.04ms
     90%    1.38ms
     99%    7.13ms
  189804 requests in 3.01s, 54.30MB read
Requests/sec:  63005.27
Transfer/sec:     18.03MB
";

    /// Real output of the same wrk against an unknown path of the same server (404s).
    const NOT_FOUND: &str = "Running 1s test @ http://127.0.0.1:41057
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.63ms    3.11ms  29.71ms   91.42%
    Req/Sec    36.19k    11.87k   56.30k    66.67%
  Latency Distribution
     50%  582.00us
     75%    1.38ms
     90%    4.17ms
     99%   17.22ms
  75768 requests in 1.10s, 5.93MB read
  Non-2xx or 3xx responses: 75768
Requests/sec:  68731.66
Transfer/sec:      5.37MB
";

    /// wrk's socket-error line (same format as wrk's `summary` output), with times in
    /// seconds.
    const SOCKET_ERRORS: &str = "Running 3s test @ http://127.0.0.1:40000
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   152.31ms  301.22ms   1.99s    88.10%
    Req/Sec   210.50     80.12   400.00     70.00%
  Latency Distribution
     50%   20.10ms
     75%  100.00ms
     90%  600.00ms
     99%    1.50s
  1263 requests in 3.01s, 400.12KB read
  Socket errors: connect 0, read 2, write 0, timeout 17
Requests/sec:    419.60
Transfer/sec:    132.93KB
";

    #[test]
    fn a_clean_run_is_parsed() {
        let r = parse(CLEAN).unwrap();
        assert_eq!(r.requests, 189_804);
        assert!((r.rps - 63_005.27).abs() < 1e-6);
        assert!((r.p50_ms - 0.841).abs() < 1e-9);
        assert!((r.p99_ms - 7.13).abs() < 1e-9);
        assert_eq!((r.non_2xx, r.socket_errors), (0, 0));
        assert_eq!(r.invalid_reason(), None);
    }

    #[test]
    fn non_2xx_answers_make_a_run_invalid() {
        let r = parse(NOT_FOUND).unwrap();
        assert_eq!(r.requests, 75_768);
        assert_eq!(r.non_2xx, 75_768);
        assert_eq!(r.invalid_reason().as_deref(), Some("75768 non-2xx"));
    }

    #[test]
    fn socket_errors_make_a_run_invalid() {
        let r = parse(SOCKET_ERRORS).unwrap();
        assert!((r.p99_ms - 1500.0).abs() < 1e-9);
        assert_eq!(r.socket_errors, 19);
        assert_eq!(r.invalid_reason().as_deref(), Some("19 socket errors"));
    }

    #[test]
    fn output_without_a_latency_distribution_is_an_error() {
        let no_latency: String = CLEAN
            .lines()
            .filter(|l| !l.contains('%') || l.contains("Thread") || l.contains("Req/Sec"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse(&no_latency).is_err());
        assert!(parse("wrk: connection refused").is_err());
    }

    #[test]
    fn times_in_every_unit() {
        assert_eq!(parse_time_ms("500.00us"), Some(0.5));
        assert_eq!(parse_time_ms("2.50ms"), Some(2.5));
        assert_eq!(parse_time_ms("1.20s"), Some(1200.0));
        assert_eq!(parse_time_ms("1.00m"), Some(60_000.0));
        assert_eq!(parse_time_ms("fast"), None);
    }
}
