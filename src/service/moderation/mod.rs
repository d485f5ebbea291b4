//! Moderation: queues and their items ([`queue`]), decisions on comments
//! ([`decisions`]), moving a comment between statuses ([`moves`]: every status change
//! goes through `move_comment`), the audit log ([`log`]) and bans ([`bans`]).
//!
//! The use cases below import these modules by their own paths; the re-exports here
//! are for the HTTP edge.

pub mod bans;
pub mod decisions;
pub mod log;
pub mod moves;
pub mod queue;

pub use bans::*;
pub use decisions::*;
pub use log::*;
pub use moves::*;
pub use queue::*;
