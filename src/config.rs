//! Runtime configuration. `Settings::from_env()` is called once, in `main`; everything
//! else receives a `Settings` (tests build one literally and never touch the environment).

use std::path::PathBuf;

/// Everything the service needs to start. Field names follow the `TALLY_*` variables.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `TALLY_DATABASE_URL`: `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// `TALLY_BIND`: listen address; port 0 picks a free port (tests).
    pub bind: String,
    pub jwt: JwtSettings,
    /// `TALLY_AUTO_CREATE_ARTICLES`: writes to unknown articles create them.
    pub auto_create_articles: bool,
    /// `TALLY_WRITE_RATE_PER_MIN`: writes per user (per client IP for guests) per minute,
    /// a burst of that many then a steady refill (`rate_limit`); 0 turns the limit off.
    pub write_rate_per_min: u32,
    /// `TALLY_TRUSTED_PROXIES`: addresses or CIDR ranges of reverse proxies whose
    /// `X-Forwarded-For` is believed when telling guests apart (empty: none).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `TALLY_MAX_BODY_BYTES`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `TALLY_LOG`: tracing filter.
    pub log: String,
    /// `TALLY_MIGRATE`: run migrations at start-up.
    pub migrate: bool,
    /// `TALLY_WORKERS`: HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// `TALLY_DB_MAX_CONNECTIONS`: database pool size.
    pub db_max_connections: u32,
    /// `TALLY_DB_ACQUIRE_TIMEOUT_SECS`: how long a request waits for a database connection
    /// before it answers 503.
    pub db_acquire_timeout_secs: u64,
    /// `TALLY_AGGREGATE_CACHE_ENTRIES`: rating aggregates kept in memory (0: no cache).
    pub aggregate_cache_entries: usize,
    /// `TALLY_AGGREGATE_CACHE_TTL_MS`: how long a cached aggregate may be served, which
    /// bounds how late writes through other instances show (0: no cache).
    pub aggregate_cache_ttl_ms: u64,
    /// `TALLY_PAGE_CACHE_ENTRIES`: anonymous comment-list pages kept in memory (0: no cache).
    pub page_cache_entries: usize,
    /// `TALLY_PAGE_CACHE_TTL_MS`: how long a cached page may be served, which bounds how
    /// late writes through other instances show (0: no cache).
    pub page_cache_ttl_ms: u64,
    /// `TALLY_CORS_ORIGINS`: origins allowed to call the API from a browser (`*`, or a
    /// comma-separated list of exact origins).
    pub cors_origins: CorsOrigins,
    /// `TALLY_REDIS_URL`: when set, write budgets are kept in this Redis and shared by
    /// every instance using it (`rate_limit::shared`).
    pub redis_url: Option<String>,
    /// `TALLY_REQUEST_TIMEOUT_MS`: how long a client may take to send a request's head,
    /// and then as long again for its body; a slower one gets 408 `request_timeout`
    /// and the connection is closed (0: no bound on the body).
    pub request_timeout_ms: u64,
    /// `TALLY_DB_TIMEOUT_MS`: how long a request may wait for the database once it has
    /// been received (PostgreSQL's `statement_timeout` too); past it the request gets
    /// 503 `unavailable` (0: no bound).
    pub db_timeout_ms: u64,
    /// `TALLY_EVENTS_POLL_MS`: how other instances' writes reach this one's caches
    /// (`service::events`). 0: LISTEN/NOTIFY on PostgreSQL (polling every second while
    /// LISTEN fails), polling every 500 ms on SQLite; more than 0: poll the outbox that
    /// often (behind a pooler in transaction mode, where LISTEN does not work).
    pub events_poll_ms: u64,
    /// `TALLY_EVENTS_RETENTION_DAYS`: how long committed events stay in the outbox
    /// (for webhooks and live streams to deliver from); 0 keeps them forever.
    pub events_retention_days: u64,
    /// `TALLY_WEBHOOK_ALLOW_PRIVATE`: webhook and external-moderation URLs may name
    /// loopback, private and other non-public addresses.
    pub webhook_allow_private: bool,
    /// `TALLY_EXTERNAL_MODERATION_SECRET`: signs the external moderation call.
    pub external_moderation_secret: Option<String>,
    /// `TALLY_WEBHOOK_RETRY_BASE_MS`: the first retry's delay; each next one doubles,
    /// up to an hour (tests shorten it).
    pub webhook_retry_base_ms: u64,
}

/// How tokens are verified. At most one of `secret` and `public_key_file` is set; with
/// neither, the server makes a random secret at start (for local trying only).
#[derive(Clone, Debug, Default)]
pub struct JwtSettings {
    /// `TALLY_JWT_SECRET`: HS256 shared secret.
    pub secret: Option<String>,
    /// `TALLY_JWT_PUBLIC_KEY_FILE`: PEM public key for RS256 / ES256 / EdDSA.
    pub public_key_file: Option<PathBuf>,
    /// `TALLY_JWT_ALGORITHM`: the one algorithm accepted (default: from the key).
    pub algorithm: Option<String>,
    /// `TALLY_JWT_ISSUER`: required `iss` when set.
    pub issuer: Option<String>,
    /// `TALLY_JWT_AUDIENCE`: required `aud` when set.
    pub audience: Option<String>,
}

/// A configuration value that cannot be used; the message names the variable.
/// Which origins may call the API from a browser (`TALLY_CORS_ORIGINS`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// `*`: any origin (the default).
    #[default]
    Any,
    /// Exact origins such as `https://example.com`; responses then vary by `Origin`.
    List(Vec<String>),
}

impl CorsOrigins {
    /// `*`, or a comma-separated list of exact origins (`scheme://host[:port]`, no path).
    pub fn parse(v: &str) -> Result<Self, String> {
        let parts: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() || parts == ["*"] {
            return Ok(CorsOrigins::Any);
        }
        let mut list = Vec::with_capacity(parts.len());
        for p in parts {
            let origin = p.to_ascii_lowercase();
            let valid = ["http://", "https://"].iter().any(|scheme| {
                origin.strip_prefix(scheme).is_some_and(|host| {
                    !host.is_empty()
                        && host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
                })
            });
            if !valid {
                return Err(format!(
                    "expected * or exact origins like https://example.com (scheme, host, optional port; no path), got {p:?}"
                ));
            }
            list.push(origin);
        }
        Ok(CorsOrigins::List(list))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://tally.db?mode=rwc";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            bind: "127.0.0.1:8080".to_owned(),
            jwt: JwtSettings::default(),
            auto_create_articles: true,
            write_rate_per_min: 20,
            trusted_proxies: vec![],
            max_body_bytes: 65_536,
            log: "info".to_owned(),
            migrate: true,
            workers: None,
            db_max_connections: 16,
            db_acquire_timeout_secs: 3,
            aggregate_cache_entries: 10_000,
            aggregate_cache_ttl_ms: 60_000,
            page_cache_entries: 1_000,
            page_cache_ttl_ms: 60_000,
            cors_origins: CorsOrigins::Any,
            redis_url: None,
            request_timeout_ms: 5_000,
            db_timeout_ms: 5_000,
            events_poll_ms: 0,
            events_retention_days: 7,
            webhook_allow_private: false,
            external_moderation_secret: None,
            webhook_retry_base_ms: 1_000,
        }
    }
}

impl Settings {
    /// Reads the process environment, completed by a `.env` file in the working
    /// directory (the environment wins; a variable set to "" counts as unset).
    pub fn from_env() -> Result<Self, ConfigError> {
        let dotenv: Vec<(String, String)> = dotenvy::dotenv_iter()
            .map(|it| it.filter_map(Result::ok).collect())
            .unwrap_or_default();
        Self::from_lookup(|key| {
            std::env::var(key)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| {
                    dotenv
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                })
        })
    }

    /// Builds settings from any key lookup (the environment in production, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| get(key).filter(|v| !v.is_empty());
        let d = Settings::default();
        Ok(Settings {
            database_url: value_or_file(&get, "TALLY_DATABASE_URL", "TALLY_DATABASE_URL_FILE")?
                .unwrap_or(d.database_url),
            bind: get("TALLY_BIND").unwrap_or(d.bind),
            jwt: JwtSettings {
                secret: value_or_file(&get, "TALLY_JWT_SECRET", "TALLY_JWT_SECRET_FILE")?,
                public_key_file: get("TALLY_JWT_PUBLIC_KEY_FILE").map(PathBuf::from),
                algorithm: get("TALLY_JWT_ALGORITHM"),
                issuer: get("TALLY_JWT_ISSUER"),
                audience: get("TALLY_JWT_AUDIENCE"),
            },
            auto_create_articles: parse_or(
                "TALLY_AUTO_CREATE_ARTICLES",
                get("TALLY_AUTO_CREATE_ARTICLES"),
                d.auto_create_articles,
                parse_bool,
            )?,
            write_rate_per_min: parse_or(
                "TALLY_WRITE_RATE_PER_MIN",
                get("TALLY_WRITE_RATE_PER_MIN"),
                d.write_rate_per_min,
                parse_num,
            )?,
            trusted_proxies: parse_or(
                "TALLY_TRUSTED_PROXIES",
                get("TALLY_TRUSTED_PROXIES"),
                d.trusted_proxies,
                parse_networks,
            )?,
            max_body_bytes: parse_or(
                "TALLY_MAX_BODY_BYTES",
                get("TALLY_MAX_BODY_BYTES"),
                d.max_body_bytes,
                parse_num,
            )?,
            log: get("TALLY_LOG").unwrap_or(d.log),
            migrate: parse_or("TALLY_MIGRATE", get("TALLY_MIGRATE"), d.migrate, parse_bool)?,
            workers: get("TALLY_WORKERS")
                .map(|v| {
                    parse_num::<usize>(&v).map_err(|message| ConfigError {
                        var: "TALLY_WORKERS",
                        message,
                    })
                })
                .transpose()?,
            db_max_connections: parse_or(
                "TALLY_DB_MAX_CONNECTIONS",
                get("TALLY_DB_MAX_CONNECTIONS"),
                d.db_max_connections,
                parse_num,
            )?,
            db_acquire_timeout_secs: parse_or(
                "TALLY_DB_ACQUIRE_TIMEOUT_SECS",
                get("TALLY_DB_ACQUIRE_TIMEOUT_SECS"),
                d.db_acquire_timeout_secs,
                parse_num,
            )?,
            aggregate_cache_entries: parse_or(
                "TALLY_AGGREGATE_CACHE_ENTRIES",
                get("TALLY_AGGREGATE_CACHE_ENTRIES"),
                d.aggregate_cache_entries,
                parse_num,
            )?,
            aggregate_cache_ttl_ms: parse_or(
                "TALLY_AGGREGATE_CACHE_TTL_MS",
                get("TALLY_AGGREGATE_CACHE_TTL_MS"),
                d.aggregate_cache_ttl_ms,
                parse_num,
            )?,
            page_cache_entries: parse_or(
                "TALLY_PAGE_CACHE_ENTRIES",
                get("TALLY_PAGE_CACHE_ENTRIES"),
                d.page_cache_entries,
                parse_num,
            )?,
            page_cache_ttl_ms: parse_or(
                "TALLY_PAGE_CACHE_TTL_MS",
                get("TALLY_PAGE_CACHE_TTL_MS"),
                d.page_cache_ttl_ms,
                parse_num,
            )?,
            cors_origins: parse_or(
                "TALLY_CORS_ORIGINS",
                get("TALLY_CORS_ORIGINS"),
                d.cors_origins,
                CorsOrigins::parse,
            )?,
            redis_url: get("TALLY_REDIS_URL"),
            request_timeout_ms: parse_or(
                "TALLY_REQUEST_TIMEOUT_MS",
                get("TALLY_REQUEST_TIMEOUT_MS"),
                d.request_timeout_ms,
                parse_num,
            )?,
            db_timeout_ms: parse_or(
                "TALLY_DB_TIMEOUT_MS",
                get("TALLY_DB_TIMEOUT_MS"),
                d.db_timeout_ms,
                parse_num,
            )?,
            events_poll_ms: parse_or(
                "TALLY_EVENTS_POLL_MS",
                get("TALLY_EVENTS_POLL_MS"),
                d.events_poll_ms,
                parse_num,
            )?,
            events_retention_days: parse_or(
                "TALLY_EVENTS_RETENTION_DAYS",
                get("TALLY_EVENTS_RETENTION_DAYS"),
                d.events_retention_days,
                parse_num,
            )?,
            webhook_allow_private: parse_or(
                "TALLY_WEBHOOK_ALLOW_PRIVATE",
                get("TALLY_WEBHOOK_ALLOW_PRIVATE"),
                d.webhook_allow_private,
                parse_bool,
            )?,
            external_moderation_secret: get("TALLY_EXTERNAL_MODERATION_SECRET"),
            webhook_retry_base_ms: parse_or(
                "TALLY_WEBHOOK_RETRY_BASE_MS",
                get("TALLY_WEBHOOK_RETRY_BASE_MS"),
                d.webhook_retry_base_ms,
                parse_num,
            )?,
        })
    }
}

/// `var`, or the contents of the file `file_var` names (a trailing newline dropped), as
/// container secrets are mounted; setting both is an error.
fn value_or_file(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<String>, ConfigError> {
    match (get(var), get(file_var)) {
        (Some(_), Some(_)) => Err(ConfigError {
            var: file_var,
            message: format!("set either {var} or {file_var}, not both"),
        }),
        (Some(v), None) => Ok(Some(v)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                var: file_var,
                message: format!("cannot read {path}: {e}"),
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_owned();
            if value.is_empty() {
                return Err(ConfigError {
                    var: file_var,
                    message: format!("{path} is empty"),
                });
            }
            Ok(Some(value))
        }
    }
}

/// Every variable tally reads: name, default, meaning. `tally --help` lists them, and a
/// `TALLY_*` variable not in here is warned about at start (a typo would otherwise be
/// ignored in silence). A variable added to `from_lookup` must be added here too (a
/// unit test checks).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("TALLY_DATABASE_URL", DEFAULT_DATABASE_URL, "sqlite://PATH?mode=rwc or postgres://USER:PASSWORD@HOST/DB?sslmode=verify-full&sslrootcert=FILE"),
    ("TALLY_DATABASE_URL_FILE", "none", "file holding TALLY_DATABASE_URL (a mounted secret)"),
    ("TALLY_BIND", "127.0.0.1:8080", "listen address"),
    ("TALLY_JWT_SECRET", "none", "HS256 secret; without any key, trial tokens are printed (loopback binds only)"),
    ("TALLY_JWT_SECRET_FILE", "none", "file holding TALLY_JWT_SECRET (a mounted secret)"),
    ("TALLY_JWT_PUBLIC_KEY_FILE", "none", "PEM public key for RS256 / ES256 / EdDSA"),
    ("TALLY_JWT_ALGORITHM", "from the key", "the one algorithm accepted"),
    ("TALLY_JWT_ISSUER", "unchecked", "required iss claim"),
    ("TALLY_JWT_AUDIENCE", "unchecked", "required aud claim"),
    ("TALLY_AUTO_CREATE_ARTICLES", "true", "writes to unknown articles create them"),
    ("TALLY_WRITE_RATE_PER_MIN", "20", "writes per caller per minute (burst of that size); 0 turns the limit off"),
    ("TALLY_REDIS_URL", "none", "redis://HOST:PORT: write limits shared by every instance"),
    ("TALLY_TRUSTED_PROXIES", "none", "proxy addresses or CIDR ranges whose X-Forwarded-For is believed"),
    ("TALLY_MAX_BODY_BYTES", "65536", "larger request bodies get 413"),
    ("TALLY_LOG", "info", "log filter; logs are JSON lines on stderr"),
    ("TALLY_MIGRATE", "true", "run migrations at start-up"),
    ("TALLY_WORKERS", "one per core", "HTTP worker threads"),
    ("TALLY_DB_MAX_CONNECTIONS", "16", "database pool size"),
    ("TALLY_DB_ACQUIRE_TIMEOUT_SECS", "3", "wait for a database connection before answering 503"),
    ("TALLY_AGGREGATE_CACHE_ENTRIES", "10000", "rating aggregates kept in memory (0: no cache)"),
    ("TALLY_AGGREGATE_CACHE_TTL_MS", "60000", "how long a cached aggregate may be served (writes through any instance invalidate it at once)"),
    ("TALLY_PAGE_CACHE_ENTRIES", "1000", "anonymous comment pages kept in memory (0: no cache)"),
    ("TALLY_PAGE_CACHE_TTL_MS", "60000", "how long a cached page may be served (writes through any instance invalidate it at once)"),
    ("TALLY_REQUEST_TIMEOUT_MS", "5000", "time to send a request's head, then its body (408 past it)"),
    ("TALLY_DB_TIMEOUT_MS", "5000", "time a request may wait for the database (503 past it; 0: no bound)"),
    ("TALLY_CORS_ORIGINS", "*", "origins allowed to call the API from a browser"),
    ("TALLY_EVENTS_POLL_MS", "0", "0: other instances' writes arrive by LISTEN/NOTIFY (PostgreSQL) or a 500 ms poll (SQLite); N: poll the outbox every N ms"),
    ("TALLY_EVENTS_RETENTION_DAYS", "7", "days committed events stay in the outbox (0: forever)"),
    ("TALLY_WEBHOOK_ALLOW_PRIVATE", "false", "allow webhook and external-moderation URLs on private or loopback addresses"),
    ("TALLY_EXTERNAL_MODERATION_SECRET", "none", "secret that signs the external moderation call"),
    ("TALLY_WEBHOOK_RETRY_BASE_MS", "1000", "first webhook retry delay, doubling up to 1 h (tests shorten it)"),
];

/// The `--help` text listing [`VARIABLES`].
pub fn variables_help() -> String {
    let mut out = String::from("Environment variables (a .env file in the working directory adds to them; the environment wins):\n");
    for (name, default, meaning) in VARIABLES {
        out.push_str(&format!("  {name}\n      {meaning} [default: {default}]\n"));
    }
    out
}

/// The `TALLY_*` names among `names` that tally does not read, each with the closest
/// known name when one is near (a likely typo).
pub fn unknown_variables<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Option<&'static str>)> {
    let mut unknown: Vec<_> = names
        .into_iter()
        .filter(|n| n.starts_with("TALLY_") && !VARIABLES.iter().any(|(k, _, _)| k == n))
        .map(|n| {
            let closest = VARIABLES
                .iter()
                .map(|(k, _, _)| (edit_distance(n, k), *k))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, k)| k);
            (n.to_owned(), closest)
        })
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The database URL with its password replaced by `***` (for logs and errors).
pub fn masked_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    // `password=` in the query string too.
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

fn parse_or<T>(
    var: &'static str,
    value: Option<String>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse(v.trim()).map_err(|message| ConfigError { var, message }),
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

/// `10.0.0.1, 192.168.0.0/16, ::1`: single addresses count as /32 or /128.
fn parse_networks(v: &str) -> Result<Vec<ipnet::IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("expected IP addresses or CIDR ranges, got {p:?}"))
        })
        .collect()
}

fn parse_num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("expected a whole number, got {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = from(&[]).unwrap();
        assert_eq!(s.database_url, "sqlite://tally.db?mode=rwc");
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert!(s.auto_create_articles);
        assert_eq!(s.write_rate_per_min, 20);
        assert_eq!(s.max_body_bytes, 65_536);
        assert_eq!(s.log, "info");
        assert!(s.migrate);
        assert!(s.jwt.secret.is_none());
        assert_eq!(s.aggregate_cache_entries, 10_000);
        assert_eq!(s.aggregate_cache_ttl_ms, 60_000);
        assert_eq!(s.page_cache_entries, 1_000);
        assert_eq!(s.page_cache_ttl_ms, 60_000);
    }

    #[test]
    fn empty_string_counts_as_unset() {
        let s = from(&[
            ("TALLY_BIND", ""),
            ("TALLY_JWT_SECRET", ""),
            ("TALLY_MIGRATE", ""),
        ])
        .unwrap();
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert!(s.jwt.secret.is_none());
        assert!(s.migrate);
    }

    #[test]
    fn values_are_parsed() {
        let s = from(&[
            ("TALLY_AUTO_CREATE_ARTICLES", "false"),
            ("TALLY_WRITE_RATE_PER_MIN", "0"),
            ("TALLY_MAX_BODY_BYTES", "1024"),
            ("TALLY_MIGRATE", "false"),
            ("TALLY_AGGREGATE_CACHE_ENTRIES", "0"),
            ("TALLY_AGGREGATE_CACHE_TTL_MS", "250"),
        ])
        .unwrap();
        assert_eq!(s.aggregate_cache_entries, 0);
        assert_eq!(s.aggregate_cache_ttl_ms, 250);
        assert!(!s.auto_create_articles);
        assert_eq!(s.write_rate_per_min, 0);
        assert_eq!(s.max_body_bytes, 1024);
        assert!(!s.migrate);
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let s = from(&[("TALLY_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16,::1")]).unwrap();
        let shown: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.1/32", "192.168.0.0/16", "::1/128"]);
        let err = from(&[("TALLY_TRUSTED_PROXIES", "10.0.0.1, proxy.local")]).unwrap_err();
        assert_eq!(err.var, "TALLY_TRUSTED_PROXIES");
    }

    #[test]
    fn secrets_may_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let url = dir.path().join("url");
        std::fs::write(&url, "postgres://u:p@db/tally\n").unwrap();
        let s = from(&[
            ("TALLY_JWT_SECRET_FILE", secret.to_str().unwrap()),
            ("TALLY_DATABASE_URL_FILE", url.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(s.jwt.secret.as_deref(), Some("from-a-file"));
        assert_eq!(s.database_url, "postgres://u:p@db/tally");
        let err = from(&[
            ("TALLY_JWT_SECRET", "x"),
            ("TALLY_JWT_SECRET_FILE", secret.to_str().unwrap()),
        ])
        .unwrap_err();
        assert_eq!(err.var, "TALLY_JWT_SECRET_FILE");
        let err = from(&[("TALLY_DATABASE_URL_FILE", "/no/such/file")]).unwrap_err();
        assert_eq!(err.var, "TALLY_DATABASE_URL_FILE");
        assert!(err.message.contains("/no/such/file"), "{}", err.message);
    }

    #[test]
    fn unknown_variables_get_the_closest_known_name() {
        let unknown = unknown_variables([
            "TALLY_DATABSE_URL",
            "TALLY_BIND",
            "PATH",
            "TALLY_SOMETHING_ELSE_ENTIRELY",
        ]);
        assert_eq!(
            unknown,
            [
                ("TALLY_DATABSE_URL".to_owned(), Some("TALLY_DATABASE_URL")),
                ("TALLY_SOMETHING_ELSE_ENTIRELY".to_owned(), None),
            ]
        );
    }

    #[test]
    fn every_variable_read_is_listed() {
        let source = include_str!("config.rs");
        let tests_start = source.find("#[cfg(test)]").unwrap();
        for piece in source[..tests_start].split('"').skip(1).step_by(2) {
            if piece.len() > 6 && piece.starts_with("TALLY_") && !piece.contains(' ') {
                assert!(
                    VARIABLES.iter().any(|(k, _, _)| *k == piece),
                    "{piece} is read but missing from VARIABLES"
                );
            }
        }
        let help = variables_help();
        for (name, default, _) in VARIABLES {
            assert!(help.contains(name) && help.contains(default));
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            masked_url("postgres://tally:s3cret@db.internal:5432/tally?sslmode=require"),
            "postgres://tally:***@db.internal:5432/tally?sslmode=require"
        );
        assert_eq!(
            masked_url("postgres://db/tally?user=t&password=s3cret"),
            "postgres://db/tally?user=t&password=***"
        );
        assert_eq!(
            masked_url("sqlite://tally.db?mode=rwc"),
            "sqlite://tally.db?mode=rwc"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from(&[("TALLY_WRITE_RATE_PER_MIN", "lots")]).unwrap_err();
        assert_eq!(err.var, "TALLY_WRITE_RATE_PER_MIN");
        let err = from(&[("TALLY_AUTO_CREATE_ARTICLES", "maybe")]).unwrap_err();
        assert_eq!(err.var, "TALLY_AUTO_CREATE_ARTICLES");
        let err = from(&[("TALLY_AGGREGATE_CACHE_TTL_MS", "1s")]).unwrap_err();
        assert_eq!(err.var, "TALLY_AGGREGATE_CACHE_TTL_MS");
        let err = from(&[("TALLY_CORS_ORIGINS", "example.com")]).unwrap_err();
        assert_eq!(err.var, "TALLY_CORS_ORIGINS");
    }
}
