//! livecamp's foundation: what every domain crate stands on.
//!
//! - [`config`]: layered configuration (defaults < file < `LIVECAMP_*`), secrets redacted.
//! - [`db`]: the sqlx pool over SQLite or PostgreSQL, migrations.
//! - [`bus`]: publish/subscribe, in-process or through Redis.
//! - [`identity`]: accounts, roles, passwords, sessions, lockout.
//! - [`org`]: regions, institutions, classes and who may see what.
//! - [`crypto`]: field encryption, keyed lookup hashes, tokens.
//! - [`audit`]: the hash-chained, append-only audit log.
//! - [`error`]: the error table and `ApiError`.
//! - [`clock`]: time as an input.
//! - [`http`]: the HTTP edge shared by all routers (state, auth extractor, JSON, errors).

pub mod audit;
pub mod bus;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod error;
pub mod http;
pub mod identity;
pub mod org;
pub mod state;

pub use error::{ApiError, ApiResult, ErrorCode};
pub use state::AppState;
