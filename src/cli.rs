//! The command line: `tally serve` (default), `tally migrate`, `tally token`.

use clap::{Parser, Subcommand};

use crate::{
    auth::{JwtKeys, Role},
    config::Settings,
    service::db::Db,
    startup::Application,
};

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Comment-and-rating moderation service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Mint a token with the configured TALLY_JWT_SECRET (for trying and for tests).
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "reader", value_parser = ["reader", "moderator", "admin"])]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

/// Runs a command; the error text is what the operator sees.
pub async fn run(cli: Cli, settings: Settings) -> Result<(), String> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let mut app = Application::build(settings.clone())
                .await
                .map_err(|e| e.to_string())?;
            app.stop_on_signals()
                .map_err(|e| format!("cannot handle signals: {e}"))?;
            tracing::info!(port = app.port(), bind = %settings.bind, "tally listening");
            app.print_trial_tokens();
            app.run_until_stopped().await.map_err(|e| e.to_string())
        }
        Command::Migrate => {
            let db = Db::connect(&settings)
                .await
                .map_err(|e| format!("database: {e}"))?;
            db.migrate()
                .await
                .map_err(|e| format!("migration failed: {e}"))?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token {
            sub,
            name,
            role,
            ttl,
        } => {
            if settings.jwt.secret.is_none() {
                return Err("tally token needs TALLY_JWT_SECRET: the server must verify with the same secret".into());
            }
            let keys = JwtKeys::from_settings(&settings.jwt).map_err(|e| e.to_string())?;
            let role = Role::parse(&role).unwrap_or(Role::Reader);
            let token = keys
                .mint(&sub, name.as_deref(), role, ttl)
                .map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
    }
}
