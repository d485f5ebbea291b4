//! `tally export` and `tally import` (issue 22): the whole database as JSON Lines and
//! back, and imports from Disqus, WordPress (WXR) and Isso.
//!
//! - [`lines`]: the JSON Lines format, one type a line, every column of the row.
//! - [`export`]: streams every table in a fixed order (constant memory).
//! - [`import`]: validates records and writes them in batched multi-row inserts, all in
//!   one transaction, then recounts every kept counter ([`recount`]); `--dry-run` rolls
//!   the transaction back, `--strict` stops at the first refusal.
//! - [`disqus`], [`wxr`], [`isso`]: read a foreign export into [`foreign::Foreign`],
//!   which [`import`] writes like any other batch; [`html`] turns their HTML into text.

pub mod disqus;
pub mod export;
pub mod foreign;
pub mod html;
pub mod import;
pub mod indexes;
pub mod isso;
pub mod lines;
pub mod recount;
pub mod wxr;

use std::fmt;

/// What `tally import --format` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tally,
    Disqus,
    Wxr,
    Isso,
}

impl Format {
    pub const NAMES: [&'static str; 4] = ["tally", "disqus", "wxr", "isso"];

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "tally" => Some(Format::Tally),
            "disqus" => Some(Format::Disqus),
            "wxr" => Some(Format::Wxr),
            "isso" => Some(Format::Isso),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tally => "tally",
            Format::Disqus => "disqus",
            Format::Wxr => "wxr",
            Format::Isso => "isso",
        }
    }
}

/// A record not imported, and where it was: `line N` (JSON Lines) or the source
/// element's id (`post 123`, `comment 7`).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// What an import did (or, with `--dry-run`, would have done).
#[derive(Debug, Default)]
pub struct Summary {
    /// Records written.
    pub imported: u64,
    /// Records already there (imported before) or not meant for tally (pingbacks).
    pub skipped: u64,
    pub refused: Vec<Refusal>,
    pub dry_run: bool,
    /// Webhooks imported from a tally export, with the secret made for each (an
    /// export leaves the secrets out): `(id, url, secret)`.
    pub new_secrets: Vec<(String, String, String)>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported {}, skipped {}, refused {}",
            self.imported,
            self.skipped,
            self.refused.len()
        )?;
        if self.dry_run {
            write!(f, " (dry run: nothing written)")?;
        }
        for r in &self.refused {
            write!(f, "\n  refused {r}")?;
        }
        if !self.new_secrets.is_empty() {
            if self.dry_run {
                write!(
                    f,
                    "\n  {} webhook(s) would be imported, each with a new secret",
                    self.new_secrets.len()
                )?;
            } else {
                write!(
                    f,
                    "\n  webhooks imported with a NEW secret (an export has none; give each \
                     receiver its new secret, shown only here):"
                )?;
                for (id, url, secret) in &self.new_secrets {
                    write!(f, "\n    webhook {id} {url} secret {secret}")?;
                }
            }
        }
        Ok(())
    }
}

/// Why an import did not complete.
#[derive(Debug)]
pub enum ImportError {
    /// The input cannot be read at all (exit 2).
    Unreadable(String),
    /// `--strict` met a bad record; nothing was written (exit 1).
    Strict(Refusal),
    /// The database failed; nothing was written (exit 1).
    Database(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Unreadable(e) => write!(f, "cannot read the input: {e}"),
            ImportError::Strict(r) => write!(
                f,
                "stopped at a bad record (--strict), nothing written: {r}"
            ),
            ImportError::Database(e) => write!(f, "database error, nothing written: {e}"),
        }
    }
}

impl From<sea_orm::DbErr> for ImportError {
    fn from(e: sea_orm::DbErr) -> Self {
        ImportError::Database(e.to_string())
    }
}

/// A progress bar on standard error, drawn only when it is a terminal.
pub fn progress(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}
