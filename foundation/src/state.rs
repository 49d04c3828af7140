//! `AppState`: the one cloneable state every router shares, and its assembly from configuration.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::audit::Audit;
use crate::bus::{Bus, InProcessBus, RedisBus};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::Keys;
use crate::db::Db;
use crate::identity::password::PasswordHasher;
use crate::identity::{Identity, SessionPolicy};
use crate::org::Org;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub bus: Arc<dyn Bus>,
    pub clock: Arc<dyn Clock>,
    pub identity: Arc<Identity>,
    pub org: Org,
    pub audit: Audit,
    pub login_limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db.backend())
            .field("bus", &self.bus.health().kind)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Connects storage and bus, applies migrations and loads the keys.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let keys = Arc::new(load_keys(&config)?);
        let db = Db::connect(&config.database_url(), config.database_max_connections).await?;
        db.migrate().await?;
        let bus: Arc<dyn Bus> = match &config.redis_url {
            Some(url) => RedisBus::connect(url, &config.redis_namespace).await?,
            None => InProcessBus::new(),
        };
        let audit = Audit::new(db.clone(), clock.clone());
        let hasher = PasswordHasher::new(config.argon2_memory_kib, config.argon2_iterations)?;
        let policy = SessionPolicy {
            idle_ms: i64::from(config.session_idle_minutes) * 60_000,
            max_ms: i64::from(config.session_max_hours) * 3_600_000,
            max_failed_logins: i64::from(config.max_failed_logins),
            lockout_ms: i64::from(config.lockout_minutes) * 60_000,
        };
        let identity = Arc::new(Identity::new(
            db.clone(),
            keys,
            hasher,
            clock.clone(),
            audit.clone(),
            bus.clone(),
            policy,
        ));
        identity.watch_session_ends().await;
        let per_minute =
            NonZeroU32::new(config.login_rate_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let login_limiter = Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute)));
        Ok(Self {
            config: Arc::new(config),
            org: Org::new(db.clone()),
            db,
            bus,
            clock,
            identity,
            audit,
            login_limiter,
        })
    }
}

/// Keys from configuration; for an embedded SQLite run without configured keys, from
/// `{data_dir}/secrets.toml` (created on first start). PostgreSQL deployments run several nodes
/// that must share keys, so there they must be configured.
fn load_keys(config: &Config) -> anyhow::Result<Keys> {
    let (field_keys, lookup_key) = if !config.field_keys.is_empty() && !config.lookup_key.is_empty()
    {
        (config.field_keys.clone(), config.lookup_key.clone())
    } else {
        anyhow::ensure!(
            !config.uses_postgres(),
            "field_keys and lookup_key must be configured when database_url is PostgreSQL \
             (every node needs the same keys); `livecamp keys generate` prints a fresh pair"
        );
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        Keys::load_or_create_file(&config.data_dir.join("secrets.toml"))?
    };
    Keys::from_config(&field_keys, &lookup_key).map_err(|e| anyhow::anyhow!("invalid keys: {e}"))
}
