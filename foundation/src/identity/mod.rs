//! Who everyone is: accounts with their real-name fields, roles, argon2id passwords, lockout after
//! repeated failures, and server-side sessions with the "one active session per account" rule
//! (a new login ends the previous session everywhere; seed 004).
//!
//! Sessions are rows keyed by the SHA-256 of a random token; the token itself is only ever held
//! by the client. `sessions.account_id` is UNIQUE, so the database itself enforces one session per
//! account. When a session ends, a tombstone says why, so the old client is told "logged in
//! elsewhere" instead of "unknown token", and the bus announces it so live sockets can close.

pub mod fields;
pub mod password;
pub mod rekey;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::audit::{Audit, AuditEvent};
use crate::bus::Bus;
use crate::clock::{Clock, UnixMillis};
use crate::crypto::{Keys, random_token, sha256_hex};
use crate::db::{Db, is_unique_violation};
use crate::error::{ApiError, ApiResult, ErrorCode};
use fields::{IdNumber, NewPassword, PersonName, Phone, Username};
use password::PasswordHasher;

/// Bus topic on which ended sessions are announced (payload: JSON [`SessionEnded`]).
pub const SESSION_ENDED_TOPIC: &str = "identity.session_ended";
/// Someone's roles changed: every node drops its cached principals (payload: the account id).
pub const PRINCIPAL_CHANGED_TOPIC: &str = "identity.principal_changed";

/// The five roles. A person may hold several.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 学员
    Trainee,
    /// 讲师
    Instructor,
    /// 培训机构管理员
    InstitutionAdmin,
    /// 主管部门 (for one region)
    Supervisor,
    /// 平台管理员
    PlatformAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Trainee,
        Role::Instructor,
        Role::InstitutionAdmin,
        Role::Supervisor,
        Role::PlatformAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trainee => "trainee",
            Role::Instructor => "instructor",
            Role::InstitutionAdmin => "institution_admin",
            Role::Supervisor => "supervisor",
            Role::PlatformAdmin => "platform_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: i64,
    pub username: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub institution_id: Option<i64>,
    pub region_id: Option<i64>,
    /// SHA-256 of the session token (never the token itself).
    pub session_hash: String,
    pub csrf_token: String,
    /// Set only for a buyer bot of this class (commerce's simulated traffic), which acts
    /// in-process without a session: it may enter that class's rooms and buy there as a viewer,
    /// and sees nothing else. `None` for everyone who logs in.
    pub bot_class: Option<i64>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Checks a CSRF token in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf_token.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Where a request came from, for the audit log and rate limits.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

/// Announced on [`SESSION_ENDED_TOPIC`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionEnded {
    pub account_id: i64,
    pub session_hash: String,
    pub reason: String,
}

/// Session and lockout rules, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_ms: i64,
    pub max_ms: i64,
    pub max_failed_logins: i64,
    pub lockout_ms: i64,
}

/// A successful login.
#[derive(Debug)]
pub struct LoginSuccess {
    /// The bearer token; also the cookie value. Shown once.
    pub token: String,
    pub principal: Principal,
}

/// An account to create; every field already validated by its newtype.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: Username,
    pub name: PersonName,
    pub password: NewPassword,
    pub roles: Vec<Role>,
    pub phone: Option<Phone>,
    pub id_number: Option<IdNumber>,
    pub institution_id: Option<i64>,
    pub region_id: Option<i64>,
    pub certificate_no: Option<String>,
}

/// Accounts, passwords and sessions.
#[derive(Debug)]
pub struct Identity {
    /// Recently authenticated sessions, so a busy client (a flash-sale tap per second) does
    /// not cost three queries a request. Entries live [`SESSION_CACHE_TTL`] at most and leave
    /// at once when this node ends the session or hears on the bus that another node did, or
    /// that someone's roles changed; while the bus is down, other nodes' changes show within
    /// the TTL.
    sessions: moka::sync::Cache<String, Arc<CachedSession>>,
    /// Bumped before every whole-cache invalidation (a role change), so a principal loaded
    /// before one is not cached after it (`remember`).
    cache_epoch: std::sync::atomic::AtomicU64,
    /// Sessions ended within the TTL, so a request that loaded one just before it ended does
    /// not cache it after (`remember`): a logout racing a request cannot leave it usable.
    recently_ended: moka::sync::Cache<String, ()>,
    db: Db,
    keys: Arc<Keys>,
    hasher: PasswordHasher,
    clock: Arc<dyn Clock>,
    audit: Audit,
    bus: Arc<dyn Bus>,
    policy: SessionPolicy,
}

const SESSION_TOUCH_INTERVAL_MS: i64 = 60_000;
/// How long an authenticated session is answered from memory: as long as its `last_seen_at`
/// may lag anyway ([`SESSION_TOUCH_INTERVAL_MS`]). Ends and role changes reach every node's
/// cache through the bus at once; the TTL bounds what a node misses while the bus is down.
/// (At 5 s, a flash sale's crowd, which loads the card during the countdown and taps when it
/// opens, found the cache cold: three queries a tap.)
pub const SESSION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug)]
struct CachedSession {
    principal: Principal,
    last_seen: i64,
    expires_at: i64,
}
const TOMBSTONE_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

impl Identity {
    pub fn new(
        db: Db,
        keys: Arc<Keys>,
        hasher: PasswordHasher,
        clock: Arc<dyn Clock>,
        audit: Audit,
        bus: Arc<dyn Bus>,
        policy: SessionPolicy,
    ) -> Self {
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(SESSION_CACHE_TTL)
                .build(),
            cache_epoch: std::sync::atomic::AtomicU64::new(0),
            recently_ended: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(SESSION_CACHE_TTL)
                .build(),
            db,
            keys,
            hasher,
            clock,
            audit,
            bus,
            policy,
        }
    }

    /// Forgets cached sessions that end anywhere in the cluster, and every cached principal
    /// when someone's roles change anywhere (run once per node).
    pub async fn watch_session_ends(self: &Arc<Self>) {
        let mut ends = self.bus.subscribe(SESSION_ENDED_TOPIC).await;
        let mut changes = self.bus.subscribe(PRINCIPAL_CHANGED_TOPIC).await;
        let identity = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let (end, change) = tokio::select! {
                    m = ends.recv() => (m, None),
                    m = changes.recv() => (None, m),
                };
                let Some(identity) = identity.upgrade() else {
                    break;
                };
                match (end, change) {
                    (Some(Ok(bytes)), _) => {
                        if let Ok(end) = serde_json::from_slice::<SessionEnded>(&bytes) {
                            identity.forget_session(&end.session_hash);
                        }
                    }
                    // Roles are rare to change: dropping everything is simpler than an index
                    // by account, and costs one query per active session.
                    (_, Some(Ok(_))) => identity.forget_all(),
                    // Missed some: drop everything rather than serve an ended session.
                    (Some(Err(_)), _) | (_, Some(Err(_))) => identity.forget_all(),
                    // The bus is gone (shutdown).
                    (None, None) => break,
                }
            }
        });
    }

    fn cache_epoch(&self) -> u64 {
        self.cache_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Caches a session loaded since `epoch`, unless the whole cache was dropped meanwhile or
    /// this session has ended (then what was loaded may be stale). Checked again after the
    /// insert, so an invalidation between the check and the insert still removes it.
    fn remember(&self, epoch: u64, session_hash: String, cached: CachedSession) {
        let stale =
            || self.cache_epoch() != epoch || self.recently_ended.contains_key(&session_hash);
        if stale() {
            return;
        }
        self.sessions.insert(session_hash.clone(), Arc::new(cached));
        if stale() {
            self.sessions.invalidate(&session_hash);
        }
    }

    fn forget_session(&self, session_hash: &str) {
        self.recently_ended.insert(session_hash.to_owned(), ());
        self.sessions.invalidate(session_hash);
    }

    fn forget_all(&self) {
        self.cache_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.sessions.invalidate_all();
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// argon2id on the blocking pool.
    pub async fn hash_password(&self, password: &str) -> ApiResult<String> {
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    async fn verify_password(&self, password: &str, stored: Option<String>) -> ApiResult<bool> {
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || match stored {
            Some(stored) => hasher.verify(&password, &stored),
            None => {
                hasher.waste_verification(&password);
                false
            }
        })
        .await
        .map_err(ApiError::internal)
    }

    /// Checks the password, applies lockout, and on success replaces any existing session of the
    /// account with a new one.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
    ) -> ApiResult<LoginSuccess> {
        let now = self.clock.now_millis();
        // A malformed username cannot exist; answer exactly like a wrong password.
        let username = Username::parse(username).ok();
        let row = match &username {
            Some(u) => sqlx::query(
                // Buyer bots (is_bot) never log in: they are answered as unknown usernames.
                "SELECT id, password_hash, failed_logins, locked_until, disabled FROM accounts WHERE username = $1 AND is_bot = 0",
            )
            .bind(u.as_str())
            .fetch_optional(self.db.pool())
            .await?,
            None => None,
        };
        let shown_name = username
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_else(|| "(invalid)".into());
        let Some(row) = row else {
            self.verify_password(password, None).await?;
            self.audit
                .append(
                    AuditEvent::new(None, "login_failed", format!("username:{shown_name}"))
                        .detail(serde_json::json!({"reason": "unknown_username"}))
                        .ip(&client.ip),
                )
                .await?;
            return Err(ErrorCode::InvalidCredentials.into());
        };
        let account_id: i64 = row.try_get(0)?;
        let stored_hash: String = row.try_get(1)?;
        let failed: i64 = row.try_get(2)?;
        let locked_until: Option<i64> = row.try_get(3)?;
        let disabled: i64 = row.try_get(4)?;
        let target = format!("account:{account_id}");

        if let Some(until) = locked_until.filter(|u| *u > now) {
            self.audit
                .append(
                    AuditEvent::new(Some(account_id), "login_refused_locked", &target)
                        .ip(&client.ip),
                )
                .await?;
            return Err(locked_error(until, now));
        }

        if !self.verify_password(password, Some(stored_hash)).await? {
            let failed = failed + 1;
            let mut tx = self.db.begin_write().await?;
            let lock = failed >= self.policy.max_failed_logins;
            if lock {
                let until = now + self.policy.lockout_ms;
                sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = $1, updated_at = $2 WHERE id = $3")
                    .bind(until)
                    .bind(now)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "UPDATE accounts SET failed_logins = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(failed)
                .bind(now)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
            }
            self.audit
                .append_in(
                    &mut tx,
                    AuditEvent::new(Some(account_id), "login_failed", &target)
                        .detail(serde_json::json!({"reason": "wrong_password", "failed_in_a_row": failed}))
                        .ip(&client.ip),
                )
                .await?;
            if lock {
                self.audit
                    .append_in(
                        &mut tx,
                        AuditEvent::new(None, "account_locked", &target)
                            .detail(serde_json::json!({"minutes": self.policy.lockout_ms / 60_000}))
                            .ip(&client.ip),
                    )
                    .await?;
            }
            tx.commit().await?;
            if lock {
                return Err(locked_error(now + self.policy.lockout_ms, now));
            }
            return Err(ErrorCode::InvalidCredentials.into());
        }

        if disabled != 0 {
            return Err(ErrorCode::AccountDisabled.into());
        }

        let token = random_token();
        let session_hash = sha256_hex(token.as_bytes());
        let csrf_token = random_token();
        let mut tx = self.db.begin_write().await?;
        let replaced: Vec<String> =
            sqlx::query("DELETE FROM sessions WHERE account_id = $1 RETURNING token_hash")
                .bind(account_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
        for old in &replaced {
            insert_tombstone(&mut tx, old, account_id, "replaced", now).await?;
        }
        sqlx::query(
            "INSERT INTO sessions (token_hash, account_id, csrf_token, created_at, last_seen_at, expires_at, client_ip, user_agent) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7) \
             ON CONFLICT (account_id) DO UPDATE SET token_hash = excluded.token_hash, csrf_token = excluded.csrf_token, \
             created_at = excluded.created_at, last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at, \
             client_ip = excluded.client_ip, user_agent = excluded.user_agent",
        )
        .bind(&session_hash)
        .bind(account_id)
        .bind(&csrf_token)
        .bind(now)
        .bind(now + self.policy.max_ms)
        .bind(&client.ip)
        .bind(truncate(&client.user_agent, 300))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        self.audit
            .append_in(
                &mut tx,
                AuditEvent::new(Some(account_id), "login", &target)
                    .detail(serde_json::json!({"replaced_sessions": replaced.len()}))
                    .ip(&client.ip),
            )
            .await?;
        sqlx::query("DELETE FROM session_ends WHERE ended_at < $1")
            .bind(now - TOMBSTONE_KEEP_MS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for old in replaced {
            self.announce_end(account_id, old, "replaced").await;
        }
        let epoch = self.cache_epoch();
        let principal = self
            .load_principal(account_id, session_hash.clone(), csrf_token)
            .await?;
        // The client's next requests follow at once: answer them from memory.
        self.remember(
            epoch,
            session_hash,
            CachedSession {
                principal: principal.clone(),
                last_seen: now,
                expires_at: (now + self.policy.max_ms).min(now + self.policy.idle_ms),
            },
        );
        Ok(LoginSuccess { token, principal })
    }

    /// Resolves a session token to its principal, ending it if idle or past its lifetime.
    pub async fn authenticate(&self, token: &str) -> ApiResult<Principal> {
        if token.len() != 43
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ErrorCode::Unauthenticated.into());
        }
        let now = self.clock.now_millis();
        let session_hash = sha256_hex(token.as_bytes());
        if let Some(cached) = self.sessions.get(&session_hash)
            && now < cached.expires_at
            && now - cached.last_seen < SESSION_TOUCH_INTERVAL_MS
        {
            return Ok(cached.principal.clone());
        }
        let epoch = self.cache_epoch();
        let row = sqlx::query(
            "SELECT account_id, csrf_token, last_seen_at, expires_at FROM sessions WHERE token_hash = $1",
        )
        .bind(&session_hash)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Err(self.ended_session_error(&session_hash).await);
        };
        let account_id: i64 = row.try_get(0)?;
        let csrf_token: String = row.try_get(1)?;
        let last_seen: i64 = row.try_get(2)?;
        let expires_at: i64 = row.try_get(3)?;
        if now >= expires_at || now - last_seen >= self.policy.idle_ms {
            self.end_session(account_id, &session_hash, "expired")
                .await?;
            return Err(ApiError::with_message(
                ErrorCode::SessionEnded,
                "会话已过期，请重新登录",
            ));
        }
        let mut last_seen = last_seen;
        if now - last_seen >= SESSION_TOUCH_INTERVAL_MS {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(&session_hash)
                .execute(self.db.pool())
                .await?;
            last_seen = now;
        }
        let principal = self
            .load_principal(account_id, session_hash.clone(), csrf_token)
            .await?;
        self.remember(
            epoch,
            session_hash,
            CachedSession {
                principal: principal.clone(),
                last_seen,
                expires_at: expires_at.min(last_seen + self.policy.idle_ms),
            },
        );
        Ok(principal)
    }

    async fn ended_session_error(&self, session_hash: &str) -> ApiError {
        let reason: Option<String> =
            match sqlx::query("SELECT reason FROM session_ends WHERE token_hash = $1")
                .bind(session_hash)
                .fetch_optional(self.db.pool())
                .await
            {
                Ok(row) => row.and_then(|r| r.try_get(0).ok()),
                Err(e) => return ApiError::from(e),
            };
        match reason.as_deref() {
            Some("replaced") => ApiError::with_message(
                ErrorCode::SessionEnded,
                "账号已在其他地方登录，当前会话已结束",
            ),
            Some("expired") => {
                ApiError::with_message(ErrorCode::SessionEnded, "会话已过期，请重新登录")
            }
            Some(_) => ApiError::with_message(ErrorCode::SessionEnded, "会话已结束，请重新登录"),
            None => ErrorCode::Unauthenticated.into(),
        }
    }

    async fn load_principal(
        &self,
        account_id: i64,
        session_hash: String,
        csrf_token: String,
    ) -> ApiResult<Principal> {
        let row = sqlx::query(
            "SELECT username, name, institution_id, region_id, disabled FROM accounts WHERE id = $1",
        )
        .bind(account_id)
        .fetch_one(self.db.pool())
        .await?;
        if row.try_get::<i64, _>(4)? != 0 {
            return Err(ErrorCode::AccountDisabled.into());
        }
        Ok(Principal {
            account_id,
            username: row.try_get(0)?,
            name: row.try_get(1)?,
            institution_id: row.try_get(2)?,
            region_id: row.try_get(3)?,
            roles: self.roles_of(account_id).await?,
            session_hash,
            csrf_token,
            bot_class: None,
        })
    }

    pub async fn roles_of(&self, account_id: i64) -> ApiResult<Vec<Role>> {
        let rows = sqlx::query("SELECT role FROM account_roles WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(self.db.pool())
            .await?;
        let mut roles: Vec<Role> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter_map(|s| Role::parse(&s))
            .collect();
        roles.sort();
        Ok(roles)
    }

    async fn end_session(
        &self,
        account_id: i64,
        session_hash: &str,
        reason: &str,
    ) -> ApiResult<()> {
        let now = self.clock.now_millis();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(session_hash)
            .execute(&mut *tx)
            .await?;
        insert_tombstone(&mut tx, session_hash, account_id, reason, now).await?;
        tx.commit().await?;
        self.announce_end(account_id, session_hash.to_owned(), reason)
            .await;
        Ok(())
    }

    async fn announce_end(&self, account_id: i64, session_hash: String, reason: &str) {
        self.forget_session(&session_hash);
        let event = SessionEnded {
            account_id,
            session_hash,
            reason: reason.to_owned(),
        };
        // Serialising a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        if let Err(e) = self
            .bus
            .publish(SESSION_ENDED_TOPIC, Bytes::from(payload))
            .await
        {
            tracing::warn!(error = %e, "session end announced on this node only");
        }
    }

    pub async fn logout(&self, principal: &Principal, client: &ClientInfo) -> ApiResult<()> {
        self.end_session(principal.account_id, &principal.session_hash, "logout")
            .await?;
        self.audit
            .append(
                AuditEvent::new(
                    Some(principal.account_id),
                    "logout",
                    format!("account:{}", principal.account_id),
                )
                .ip(&client.ip),
            )
            .await?;
        Ok(())
    }

    /// Changes the caller's password after checking the old one. The current session stays.
    pub async fn change_password(
        &self,
        principal: &Principal,
        old_password: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> ApiResult<()> {
        let new_password = NewPassword::parse(new_password)?;
        let stored: String = sqlx::query("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(principal.account_id)
            .fetch_one(self.db.pool())
            .await?
            .try_get(0)?;
        if !self.verify_password(old_password, Some(stored)).await? {
            return Err(ApiError::with_message(
                ErrorCode::InvalidCredentials,
                "原密码不正确",
            ));
        }
        if old_password == new_password.as_str() {
            return Err(ApiError::with_message(
                ErrorCode::WeakPassword,
                "新密码不能与原密码相同",
            ));
        }
        let hash = self.hash_password(new_password.as_str()).await?;
        let now = self.clock.now_millis();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE accounts SET password_hash = $1, password_changed_at = $2, updated_at = $2 WHERE id = $3")
            .bind(&hash)
            .bind(now)
            .bind(principal.account_id)
            .execute(&mut *tx)
            .await?;
        self.audit
            .append_in(
                &mut tx,
                AuditEvent::new(
                    Some(principal.account_id),
                    "password_changed",
                    format!("account:{}", principal.account_id),
                )
                .ip(&client.ip),
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates an account. `actor` is `None` for the system (demo data, imports by command).
    /// An institution admin may only create trainees and instructors of their own institution.
    pub async fn create_account(
        &self,
        actor: Option<&Principal>,
        new: NewAccount,
        client: &ClientInfo,
    ) -> ApiResult<i64> {
        let mut new = new;
        if let Some(actor) = actor {
            if actor.has(Role::PlatformAdmin) {
                // anything goes
            } else if actor.has(Role::InstitutionAdmin) {
                if new
                    .roles
                    .iter()
                    .any(|r| !matches!(r, Role::Trainee | Role::Instructor))
                {
                    return Err(ApiError::with_message(
                        ErrorCode::Forbidden,
                        "培训机构管理员只能创建学员或讲师账号",
                    ));
                }
                match (new.institution_id, actor.institution_id) {
                    (Some(wanted), Some(own)) if wanted != own => {
                        return Err(ApiError::not_found());
                    }
                    (_, own) => new.institution_id = own,
                }
                new.region_id = None;
            } else {
                return Err(ApiError::forbidden());
            }
        }
        if new.roles.is_empty() {
            return Err(ApiError::validation("至少需要一个角色"));
        }
        if new.roles.contains(&Role::Supervisor) && new.region_id.is_none() {
            return Err(ApiError::validation("主管部门账号须指定所属地区"));
        }
        if new
            .roles
            .iter()
            .any(|r| matches!(r, Role::InstitutionAdmin | Role::Instructor))
            && new.institution_id.is_none()
        {
            return Err(ApiError::validation(
                "讲师和机构管理员账号须指定所属培训机构",
            ));
        }
        if let Some(inst) = new.institution_id {
            let exists = sqlx::query("SELECT id FROM institutions WHERE id = $1")
                .bind(inst)
                .fetch_optional(self.db.pool())
                .await?;
            if exists.is_none() {
                return Err(ApiError::with_message(
                    ErrorCode::NotFound,
                    "培训机构不存在",
                ));
            }
        }
        if let Some(region) = new.region_id {
            let exists = sqlx::query("SELECT id FROM regions WHERE id = $1")
                .bind(region)
                .fetch_optional(self.db.pool())
                .await?;
            if exists.is_none() {
                return Err(ApiError::with_message(ErrorCode::NotFound, "地区不存在"));
            }
        }
        let hash = self.hash_password(new.password.as_str()).await?;
        let now = self.clock.now_millis();
        let keys = &self.keys;
        let phone_enc = new.phone.as_ref().map(|p| keys.fields.encrypt(p.as_str()));
        let phone_hash = new
            .phone
            .as_ref()
            .map(|p| keys.lookup.hash("phone", p.as_str()));
        let phone_masked = new.phone.as_ref().map(Phone::masked);
        let id_enc = new
            .id_number
            .as_ref()
            .map(|i| keys.fields.encrypt(i.as_str()));
        let id_hash = new
            .id_number
            .as_ref()
            .map(|i| keys.lookup.hash("id_number", i.as_str()));
        let id_masked = new.id_number.as_ref().map(IdNumber::masked);

        let mut tx = self.db.begin_write().await?;
        // Check the username first so that a request colliding on several unique fields is
        // answered about the username on both engines; the constraints stay the real guard.
        let taken = sqlx::query("SELECT id FROM accounts WHERE username = $1")
            .bind(new.username.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(ErrorCode::UsernameTaken.into());
        }
        let inserted = sqlx::query(
            "INSERT INTO accounts (username, name, password_hash, phone_enc, phone_hash, phone_masked, \
             id_number_enc, id_number_hash, id_number_masked, institution_id, region_id, certificate_no, \
             password_changed_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $13) RETURNING id",
        )
        .bind(new.username.as_str())
        .bind(new.name.as_str())
        .bind(&hash)
        .bind(phone_enc)
        .bind(phone_hash)
        .bind(phone_masked)
        .bind(id_enc)
        .bind(id_hash)
        .bind(id_masked)
        .bind(new.institution_id)
        .bind(new.region_id)
        .bind(new.certificate_no.clone())
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let account_id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(e) if is_unique_violation(&e) => {
                // A concurrent insert can still collide; both engines name the column.
                return Err(if e.to_string().contains("id_number") {
                    ErrorCode::IdNumberTaken.into()
                } else {
                    ErrorCode::UsernameTaken.into()
                });
            }
            Err(e) => return Err(e.into()),
        };
        for role in &new.roles {
            sqlx::query("INSERT INTO account_roles (account_id, role) VALUES ($1, $2)")
                .bind(account_id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let roles: Vec<&str> = new.roles.iter().map(|r| r.as_str()).collect();
        self.audit
            .append_in(
                &mut tx,
                AuditEvent::new(
                    actor.map(|a| a.account_id),
                    "account_created",
                    format!("account:{account_id}"),
                )
                .detail(serde_json::json!({
                    "username": new.username.as_str(),
                    "roles": roles,
                    "institution_id": new.institution_id,
                    "region_id": new.region_id,
                }))
                .ip(&client.ip),
            )
            .await?;
        tx.commit().await?;
        Ok(account_id)
    }

    /// Replaces an account's roles (platform admins only); audited with before and after.
    pub async fn set_roles(
        &self,
        actor: &Principal,
        account_id: i64,
        roles: Vec<Role>,
        client: &ClientInfo,
    ) -> ApiResult<()> {
        actor.require(Role::PlatformAdmin)?;
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            return Err(ApiError::validation("至少需要一个角色"));
        }
        if actor.account_id == account_id && !roles.contains(&Role::PlatformAdmin) {
            return Err(ApiError::with_message(
                ErrorCode::Conflict,
                "不能移除自己的平台管理员角色",
            ));
        }
        let before = self.roles_of(account_id).await?;
        // A buyer bot gets no roles: it is not a person.
        let row = sqlx::query(
            "SELECT institution_id, region_id FROM accounts WHERE id = $1 AND is_bot = 0",
        )
        .bind(account_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(ApiError::not_found)?;
        let institution_id: Option<i64> = row.try_get(0)?;
        let region_id: Option<i64> = row.try_get(1)?;
        if roles.contains(&Role::Supervisor) && region_id.is_none() {
            return Err(ApiError::validation("主管部门账号须指定所属地区"));
        }
        if roles
            .iter()
            .any(|r| matches!(r, Role::InstitutionAdmin | Role::Instructor))
            && institution_id.is_none()
        {
            return Err(ApiError::validation(
                "讲师和机构管理员账号须指定所属培训机构",
            ));
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM account_roles WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        for role in &roles {
            sqlx::query("INSERT INTO account_roles (account_id, role) VALUES ($1, $2)")
                .bind(account_id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let before: Vec<&str> = before.iter().map(|r| r.as_str()).collect();
        let after: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        self.audit
            .append_in(
                &mut tx,
                AuditEvent::new(
                    Some(actor.account_id),
                    "roles_changed",
                    format!("account:{account_id}"),
                )
                .detail(serde_json::json!({"before": before, "after": after}))
                .ip(&client.ip),
            )
            .await?;
        tx.commit().await?;
        // Cached principals carry roles: drop them so the change shows at once here, and on
        // the other nodes as soon as they hear it.
        self.forget_all();
        if let Err(e) = self
            .bus
            .publish(
                PRINCIPAL_CHANGED_TOPIC,
                Bytes::from(account_id.to_string().into_bytes()),
            )
            .await
        {
            tracing::warn!(error = %e, "role change announced on this node only");
        }
        Ok(())
    }

    /// Lifts a lockout. Platform admins, or the institution admin of the account's institution.
    pub async fn unlock(
        &self,
        actor: &Principal,
        account_id: i64,
        client: &ClientInfo,
    ) -> ApiResult<()> {
        let institution_id: Option<i64> =
            sqlx::query("SELECT institution_id FROM accounts WHERE id = $1 AND is_bot = 0")
                .bind(account_id)
                .fetch_optional(self.db.pool())
                .await?
                .ok_or_else(ApiError::not_found)?
                .try_get(0)?;
        let allowed = actor.has(Role::PlatformAdmin)
            || (actor.has(Role::InstitutionAdmin)
                && institution_id.is_some()
                && institution_id == actor.institution_id);
        if !allowed {
            return Err(ApiError::not_found());
        }
        let now = self.clock.now_millis();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE accounts SET locked_until = NULL, failed_logins = 0, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        self.audit
            .append_in(
                &mut tx,
                AuditEvent::new(
                    Some(actor.account_id),
                    "account_unlocked",
                    format!("account:{account_id}"),
                )
                .ip(&client.ip),
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub fn now(&self) -> UnixMillis {
        self.clock.now_millis()
    }
}

async fn insert_tombstone(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    session_hash: &str,
    account_id: i64,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO session_ends (token_hash, account_id, reason, ended_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(session_hash)
    .bind(account_id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn locked_error(until: i64, now: i64) -> ApiError {
    let minutes = ((until - now) + 59_999) / 60_000;
    ApiError::with_message(
        ErrorCode::AccountLocked,
        format!("登录失败次数过多，账号已临时锁定，请 {minutes} 分钟后再试或联系管理员解锁"),
    )
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// The profile of an account as shown to its owner: sensitive fields masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Profile {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub phone_masked: Option<String>,
    pub id_number_masked: Option<String>,
    pub institution: Option<crate::org::Ref>,
    pub region: Option<crate::org::Ref>,
    pub instructor_certificate_no: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl Identity {
    pub async fn profile(&self, account_id: i64) -> ApiResult<Profile> {
        let row = sqlx::query(
            "SELECT a.id, a.username, a.name, a.phone_masked, a.id_number_masked, i.id, i.name, \
             COALESCE(r.id, ir.id), COALESCE(r.name, ir.name), a.certificate_no, a.created_at \
             FROM accounts a LEFT JOIN institutions i ON i.id = a.institution_id \
             LEFT JOIN regions r ON r.id = a.region_id LEFT JOIN regions ir ON ir.id = i.region_id \
             WHERE a.id = $1",
        )
        .bind(account_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(ApiError::not_found)?;
        let reference = |id: Option<i64>, name: Option<String>| match (id, name) {
            (Some(id), Some(name)) => Some(crate::org::Ref { id, name }),
            _ => None,
        };
        Ok(Profile {
            id: row.try_get(0)?,
            username: row.try_get(1)?,
            name: row.try_get(2)?,
            roles: self.roles_of(account_id).await?,
            phone_masked: row.try_get(3)?,
            id_number_masked: row.try_get(4)?,
            institution: reference(row.try_get(5)?, row.try_get(6)?),
            region: reference(row.try_get(7)?, row.try_get(8)?),
            instructor_certificate_no: row.try_get(9)?,
            created_at: crate::clock::rfc3339(row.try_get(10)?),
        })
    }
}
