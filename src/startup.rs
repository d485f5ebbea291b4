//! Building the application: keys, database, migrations, listener and HTTP server.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::Server, web, App, HttpServer};

use crate::{
    auth::{JwtKeys, KeyError, Role},
    config::Settings,
    metrics::{Metrics, WorkerMetrics},
    rate_limit::WriteLimiter,
    routes::{self, ratings::CachedAggregate},
    service::{
        aggregate_cache::{AggregateCache, WorkerCopies},
        db::Db,
        idempotency,
        settings::PolicyCache,
    },
    telemetry,
};

/// Entries of each cache a worker keeps its own copies of, at most: the hot ones are
/// what the copies are for, and each worker's copies are memory on top of the shared
/// cache's (a comment page is a few kB).
const WORKER_COPIES: usize = 256;

/// What every request can reach. Cloning shares everything in it: each worker gets its
/// own clone (its own `web::Data`), so extracting the state on one core never writes
/// to a reference count that the other cores' requests write too.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub policies: PolicyCache,
    pub settings: Arc<Settings>,
    /// `None` when `write_rate_per_min` is 0.
    pub write_limiter: Option<Arc<WriteLimiter>>,
    /// Rating aggregates ready to send; every rating write invalidates its article's.
    pub aggregates: Arc<AggregateCache<CachedAggregate>>,
    /// Comment-list pages as anonymous readers get them, keyed by the database's write
    /// epoch (see `Db::write_epoch`), so any committed write retires them all.
    pub pages: Arc<AggregateCache<web::Bytes>>,
    /// `GET /api/v1/ratings/top` answers, kept up to a minute.
    pub top: Arc<crate::service::top::TopCache>,
}

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
}

impl Application {
    /// Connects, migrates (unless turned off), binds and builds the server. Binding port
    /// 0 picks a free port, which `port()` reports.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let keys = Arc::new(JwtKeys::from_settings(&settings.jwt)?);
        let db = Db::connect(&settings).await?;
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
        let state = AppState {
            db: db.clone(),
            policies: PolicyCache::default(),
            write_limiter: WriteLimiter::new(settings.write_rate_per_min).map(Arc::new),
            aggregates: Arc::new(AggregateCache::new(
                settings.aggregate_cache_entries,
                Duration::from_millis(settings.aggregate_cache_ttl_ms),
            )),
            pages: Arc::new(AggregateCache::new(
                settings.page_cache_entries,
                Duration::from_millis(settings.page_cache_ttl_ms),
            )),
            top: Arc::default(),
            settings: Arc::new(settings),
        };
        let server = run(listener, state, keys.clone(), workers)?;
        Ok(Application {
            port,
            server,
            signals: None,
            keys,
            db,
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
        let served = self.server.await;
        purge.abort();
        served
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
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(keys.clone())
            .app_data(metrics.clone())
            .app_data(WorkerMetrics::new(shared_metrics.clone()))
            // Each worker's copies of the hot cache entries (see `aggregate_cache`).
            .app_data(WorkerCopies::<CachedAggregate>::new(
                state.settings.aggregate_cache_entries.min(WORKER_COPIES),
            ))
            .app_data(WorkerCopies::<web::Bytes>::new(
                state.settings.page_cache_entries.min(WORKER_COPIES),
            ))
            // The raw body reader's own cap (actix defaults to 256 KiB); `ApiJson` also checks.
            .app_data(web::PayloadConfig::new(state.settings.max_body_bytes))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|_, _| crate::error::ApiError::not_found("resource").into()),
            )
            .wrap(telemetry::RequestLog)
            .configure(routes::configure)
    })
    .shutdown_timeout(30)
    // Signals are ours (`Application::stop_on_signals`), installed before start-up ends.
    .disable_signals();
    if let Some(n) = workers {
        server = server.workers(n);
    }
    let server = server
        .listen(listener)
        .map_err(|e| StartError::Bind(addr.map(|a| a.to_string()).unwrap_or_default(), e))?
        .run();
    Ok(server)
}
