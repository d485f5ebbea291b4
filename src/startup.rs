//! Building the application: keys, database, migrations, listener and HTTP server.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::Server, web, App};

use crate::{
    auth::{JwtKeys, KeyError, Role},
    config::Settings,
    metrics::{Metrics, WorkerMetrics},
    rate_limit::WriteLimiter,
    routes,
    service::{aggregate_cache::AggregateCache, idempotency, settings::PolicyCache, write::db::Db},
    state::AppState,
    telemetry,
};

/// The stop signals, registered with the OS as soon as this is built.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for one; whether the stop should be graceful.
    async fn wait(mut self) -> bool {
        tokio::select! {
            _ = self.term.recv() => true,
            _ = self.int.recv() => true,
            _ = self.quit.recv() => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The database could not be opened; the text names it and says what to check.
    #[error("{0}")]
    Connect(String),
    /// No key is configured and the bind address is not loopback.
    #[error("{0}")]
    NoKey(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    /// Set by [`Application::stop_on_signals`].
    signals: Option<StopSignals>,
    pub keys: Arc<JwtKeys>,
    pub db: Db,
    /// How other instances' events reach this one (`service::events::pump`).
    pump: crate::service::write::pump::PumpMode,
    /// How long events stay in the outbox (`None`: forever).
    events_retention: Option<Duration>,
    /// What the background webhook sender needs.
    webhooks: (crate::outbound::Outbound, Duration),
}

impl Application {
    /// Connects, migrates (unless turned off), binds and builds the server. Binding port
    /// 0 picks a free port, which `port()` reports.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let keys = Arc::new(JwtKeys::from_settings(&settings.jwt)?);
        if keys.ephemeral && !binds_loopback_only(&settings.bind) {
            return Err(StartError::NoKey(format!(
                "no token key is configured and TALLY_BIND={} is not a loopback address: set \
                 TALLY_JWT_SECRET (or TALLY_JWT_SECRET_FILE, or TALLY_JWT_PUBLIC_KEY_FILE). \
                 Trial tokens are only printed when binding 127.0.0.1 or ::1",
                settings.bind
            )));
        }
        let db = crate::service::connect::open(&settings)
            .await
            .map_err(StartError::Connect)?;
        if settings.migrate {
            db.migrate().await?;
        }
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| StartError::Bind(settings.bind.clone(), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Bind(settings.bind.clone(), e))?
            .port();
        let workers = settings.workers;
        let write_limiter = match (
            WriteLimiter::new(settings.write_rate_per_min),
            &settings.redis_url,
        ) {
            (Some(limiter), Some(url)) => {
                Some(limiter.shared_through(url).map_err(StartError::Connect)?)
            }
            (limiter, _) => limiter,
        };
        if let Some(limiter) = &write_limiter {
            limiter.warm_up().await;
        }
        let outbound = crate::outbound::Outbound::new(settings.webhook_allow_private)
            .map_err(StartError::Connect)?;
        let state = AppState {
            external: crate::service::external::screen::ExternalHook::new(
                outbound.clone(),
                settings.external_moderation_secret.clone(),
            ),
            outbound: outbound.clone(),
            db: db.clone(),
            policies: PolicyCache::default(),
            write_limiter: write_limiter.map(Arc::new),
            aggregates: Arc::new(AggregateCache::new(
                settings.aggregate_cache_entries,
                Duration::from_millis(settings.aggregate_cache_ttl_ms),
            )),
            pages: Arc::new(AggregateCache::new(
                settings.page_cache_entries,
                Duration::from_millis(settings.page_cache_ttl_ms),
            )),
            comment_pages: Arc::new(AggregateCache::new(
                settings.page_cache_entries,
                Duration::from_millis(settings.page_cache_ttl_ms),
            )),
            overlays: Arc::new(AggregateCache::new(
                settings.page_cache_entries,
                Duration::from_millis(settings.page_cache_ttl_ms),
            )),
            top: Arc::default(),
            settings: Arc::new(settings),
        };
        invalidate_from_events(&state);
        let pump = pump_mode(&state.settings, db.backend());
        let events_retention = match state.settings.events_retention_days {
            0 => None,
            days => Some(Duration::from_secs(days.saturating_mul(86_400))),
        };
        let webhooks = (
            outbound,
            Duration::from_millis(state.settings.webhook_retry_base_ms.max(1)),
        );
        let server = run(listener, state, keys.clone(), workers)?;
        Ok(Application {
            port,
            server,
            signals: None,
            keys,
            db,
            pump,
            events_retention,
            webhooks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server (tests stop theirs when they end).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// With no key configured, prints tokens to try the API with.
    pub fn print_trial_tokens(&self) {
        if !self.keys.ephemeral {
            return;
        }
        println!("No TALLY_JWT_SECRET or TALLY_JWT_PUBLIC_KEY_FILE is set: using a random secret for this run only.");
        println!("Tokens valid for 24 hours (for trying only):");
        for (role, sub) in [
            (Role::Reader, "reader-1"),
            (Role::Moderator, "moderator-1"),
            (Role::Admin, "admin-1"),
        ] {
            if let Ok(token) = self.keys.mint(sub, None, role, 86_400) {
                println!("  {:<9} {token}", role.as_str());
            }
        }
    }

    /// Makes SIGTERM and SIGINT stop the server gracefully (in-flight requests get up to
    /// 30 s) and SIGQUIT stop it at once. The handlers are in place when this returns,
    /// so a signal that comes right after the server says it is listening is never
    /// the default one that kills the process (actix's own handlers would only be
    /// installed once the server is first polled).
    pub fn stop_on_signals(&mut self) -> std::io::Result<()> {
        self.signals = Some(StopSignals::install()?);
        Ok(())
    }

    /// Serves until stopped: by a signal after [`stop_on_signals`](Self::stop_on_signals),
    /// or through [`handle`](Self::handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if let Some(signals) = self.signals {
            let handle = self.server.handle();
            tokio::spawn(async move {
                let graceful = signals.wait().await;
                handle.stop(graceful).await;
            });
        }
        let purge = tokio::spawn(idempotency::purge_periodically(self.db.clone()));
        let retention = tokio::spawn(crate::service::retention::purge_periodically(
            self.db.clone(),
        ));
        let pump = tokio::spawn(crate::service::write::pump::pump(
            self.db.clone(),
            self.pump,
        ));
        let spam_folds = tokio::spawn(crate::service::spam::fold_periodically(self.db.clone()));
        let outbox_purge = self.events_retention.map(|keep| {
            tokio::spawn(crate::service::write::pump::purge_periodically(
                self.db.clone(),
                keep,
            ))
        });
        let (outbound, retry_base) = self.webhooks;
        // On a thread of its own: the sender's HTTP attempts and payloads would
        // otherwise take turns on this thread with the group-commit writers.
        let webhooks = OwnThread::spawn(
            "tally-webhooks",
            crate::service::webhook_dispatch::run(self.db.clone(), outbound, retry_base),
        )?;
        let served = self.server.await;
        purge.abort();
        retention.abort();
        pump.abort();
        spam_folds.abort();
        if let Some(p) = outbox_purge {
            p.abort();
        }
        drop(webhooks);
        served
    }
}

/// A background task on a thread of its own, with a single-threaded runtime of its
/// own, so that its work never delays the tasks of the thread that spawned it. It
/// stops when this handle is dropped (its thread is not waited for).
struct OwnThread {
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OwnThread {
    fn spawn(
        name: &str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<OwnThread> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = task => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(OwnThread { _stop: stop })
    }
}

/// The caches forget what committed events changed, through this instance or another
/// (`service::events`): no handler touches a cache. Pages keyed by the write epoch
/// retire themselves (`Db` bumps it at every event).
fn invalidate_from_events(state: &AppState) {
    use crate::service::write::events::Event;
    let (aggregates, policies) = (state.aggregates.clone(), state.policies.clone());
    let top = state.top.clone();
    state.db.events().on_event(move |e| {
        if let Some(article) = e.event.article_id() {
            aggregates.invalidate(article);
        }
        match e.event {
            Event::SettingsChanged { .. } => policies.invalidate(),
            Event::SpamModelChanged => policies.spam().invalidate(),
            // The top list may show a single rating's change late (`TOP_FRESH_FOR`),
            // not an erased reader's ratings.
            Event::UserDataErased { .. } => top.clear(),
            _ => {}
        }
    });
}

/// How this instance hears of other instances' writes (`Settings::events_poll_ms`).
fn pump_mode(
    settings: &Settings,
    backend: sea_orm::DbBackend,
) -> crate::service::write::pump::PumpMode {
    use crate::service::write::pump::PumpMode;
    match (settings.events_poll_ms, backend) {
        (0, sea_orm::DbBackend::Postgres) => PumpMode::Listen {
            url: settings.database_url.clone(),
            fallback: Duration::from_secs(1),
        },
        (0, _) => PumpMode::Poll(Duration::from_millis(500)),
        (ms, _) => PumpMode::Poll(Duration::from_millis(ms)),
    }
}

/// Whether every address `bind` stands for is a loopback one (`127.0.0.1:8080`,
/// `[::1]:8080`, `localhost:8080`); an address that does not resolve counts as not.
pub fn binds_loopback_only(bind: &str) -> bool {
    use std::net::ToSocketAddrs;
    match bind.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

fn run(
    listener: TcpListener,
    state: AppState,
    keys: Arc<JwtKeys>,
    workers: Option<usize>,
) -> Result<Server, StartError> {
    let keys = web::Data::new(keys);
    let metrics =
        web::Data::new(Metrics::default().with_write_batch_sizes(state.db.write_batch_sizes()));
    let shared_metrics = metrics.clone().into_inner();
    let addr = listener.local_addr().ok();
    let request_timeout_ms = state.settings.request_timeout_ms;
    let app = move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(keys.clone())
            .app_data(metrics.clone())
            .app_data(WorkerMetrics::new(shared_metrics.clone()))
            // The raw body reader's own cap (actix defaults to 256 KiB); `ApiJson` also checks.
            .app_data(web::PayloadConfig::new(state.settings.max_body_bytes))
            .app_data(crate::edge::path_errors())
            .wrap(crate::deadline::Deadline::new(
                state.settings.request_timeout_ms,
                state.settings.db_timeout_ms,
            ))
            .wrap(telemetry::RequestLog)
            // Outside the request log, so the problems it builds carry the headers too.
            .wrap(crate::cors::Cors::new(state.settings.cors_origins.clone()))
            .configure(routes::configure)
    };
    // `HttpServer` with actix-http's bare error answers made problems (`edge`); the
    // request head within the same bound as its body (`deadline`; 0 keeps actix's 5 s).
    // Shutdown: 30 s of grace, signals ours (`Application::stop_on_signals`).
    let head_timeout = (request_timeout_ms > 0).then(|| Duration::from_millis(request_timeout_ms));
    crate::edge::serve(listener, workers, head_timeout, app)
        .map_err(|e| StartError::Bind(addr.map(|a| a.to_string()).unwrap_or_default(), e))
}
