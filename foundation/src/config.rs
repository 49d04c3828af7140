//! Configuration: built-in defaults, overridden by a TOML file, overridden by `LIVECAMP_*`
//! environment variables (figment does the layering). Every option is documented on its field;
//! README.md has the same table. Secrets are never logged: [`Config::redacted`] is the only form
//! that is printed or served.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The effective configuration of one livecamp process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the HTTP server listens on.
    pub listen: String,
    /// Base URL people use to reach this server (printed at start); defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// Directory for the SQLite file, generated secrets, uploads and recordings.
    pub data_dir: PathBuf,
    /// `sqlite://path` or `postgres://user@host/db`; defaults to `sqlite://{data_dir}/livecamp.db`.
    pub database_url: Option<String>,
    /// Upper bound of pooled database connections.
    pub database_max_connections: u32,
    /// `redis://host:port`; when set, the bus and hot counters are shared through Redis.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    pub redis_namespace: String,
    /// Create the demo region, institution, class and accounts in an empty database.
    pub demo_data: bool,
    /// Password of every demo account; generated (and printed) when unset. Secret.
    pub demo_password: Option<String>,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// tracing filter, for example `info` or `livecamp=debug,sqlx=warn`.
    pub log_level: String,
    /// AES-256-GCM keys for sensitive fields, `kid:base64key` separated by commas; the first one
    /// encrypts, all of them decrypt (key rotation). Generated into `{data_dir}/secrets.toml` for
    /// an embedded SQLite run when unset; required with PostgreSQL. Secret.
    pub field_keys: String,
    /// HMAC-SHA256 key (base64, 32 bytes) for looking up ID and phone numbers. Secret.
    pub lookup_key: String,
    /// A session that is unused for this long ends.
    pub session_idle_minutes: u32,
    /// A session ends this long after login whatever happens.
    pub session_max_hours: u32,
    /// Failed logins in a row before an account is locked.
    pub max_failed_logins: u32,
    /// How long a locked account stays locked.
    pub lockout_minutes: u32,
    /// Login attempts allowed per client address per minute.
    pub login_rate_per_minute: u32,
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// Largest accepted request body for JSON APIs, in bytes.
    pub max_body_bytes: usize,
    /// Trust `X-Forwarded-For` from the reverse proxy for client addresses.
    pub behind_proxy: bool,
    /// Mark cookies `Secure` (serve over HTTPS). Defaults to true when `public_url` is https.
    pub secure_cookies: Option<bool>,
    /// Seconds to let requests finish after SIGTERM / Ctrl-C.
    pub shutdown_grace_seconds: u64,
    /// The one UDP address and port of every WebRTC peer (ICE multiplexing). Port 0 picks one.
    pub media_listen: String,
    /// The address browsers and OBS reach `media_listen` at (behind NAT: the public address);
    /// defaults to `media_listen`'s address, and is required when that is 0.0.0.0 or ::.
    pub media_public_ip: Option<std::net::IpAddr>,
    /// TURN servers handed to clients behind strict NAT, e.g. `turn:turn.example.cn:3478`.
    pub turn_urls: Vec<String>,
    pub turn_username: Option<String>,
    /// Secret.
    pub turn_password: Option<String>,
    /// Base URL of an OpenAI-compatible API for AI live scripts, including its version path,
    /// e.g. `https://api.openai.com/v1`; unset: scripts come from the built-in template.
    pub llm_base_url: Option<String>,
    /// Chat model asked for live scripts.
    pub llm_model: String,
    /// Bearer key of `llm_base_url` (none for endpoints without authentication). Secret.
    pub llm_api_key: Option<String>,
    /// Largest product video upload (短视频), in bytes; stored under `{data_dir}/videos`.
    pub video_max_bytes: u64,
    /// Longest product video accepted, in seconds.
    pub video_max_seconds: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            redis_url: None,
            redis_namespace: "livecamp".into(),
            demo_data: true,
            demo_password: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            field_keys: String::new(),
            lookup_key: String::new(),
            session_idle_minutes: 120,
            session_max_hours: 24,
            max_failed_logins: 5,
            lockout_minutes: 15,
            login_rate_per_minute: 30,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            max_body_bytes: 1024 * 1024,
            behind_proxy: false,
            secure_cookies: None,
            shutdown_grace_seconds: 10,
            media_listen: "127.0.0.1:7882".into(),
            media_public_ip: None,
            turn_urls: Vec::new(),
            turn_username: None,
            turn_password: None,
            llm_base_url: None,
            llm_model: "gpt-4o-mini".into(),
            llm_api_key: None,
            video_max_bytes: 200 * 1024 * 1024,
            video_max_seconds: 600,
        }
    }
}

/// Names of the options whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "demo_password",
    "field_keys",
    "lookup_key",
    "turn_password",
    "llm_api_key",
];

impl Config {
    /// Where the media socket binds, and the address it is advertised at in ICE candidates.
    pub fn media_address(&self) -> anyhow::Result<(std::net::SocketAddr, std::net::IpAddr)> {
        let bind: std::net::SocketAddr = self.media_listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "media_listen must be an address and port such as 0.0.0.0:7882, got {:?}",
                self.media_listen
            )
        })?;
        let public = match self.media_public_ip {
            Some(ip) => ip,
            None if !bind.ip().is_unspecified() => bind.ip(),
            None => anyhow::bail!(
                "media_public_ip is required when media_listen ({}) binds every interface: \
                 browsers need the address they can reach",
                self.media_listen
            ),
        };
        anyhow::ensure!(
            !public.is_unspecified(),
            "media_public_ip cannot be {public}"
        );
        Ok((bind, public))
    }

    /// Loads defaults < `file` (when given, or `livecamp.toml` when present) < `LIVECAMP_*`.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "configuration file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("livecamp.toml")),
        }
        figment = figment.merge(Env::prefixed("LIVECAMP_").ignore(&["config"]));
        let config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.listen.parse::<std::net::SocketAddr>().is_ok(),
            "listen must be an address and port such as 127.0.0.1:8080, got {:?}",
            self.listen
        );
        self.media_address()?;
        anyhow::ensure!(self.max_failed_logins > 0, "max_failed_logins must be > 0");
        anyhow::ensure!(
            self.argon2_memory_kib >= 8 && self.argon2_iterations >= 1,
            "argon2 costs are too low"
        );
        anyhow::ensure!(
            self.max_body_bytes >= 1024,
            "max_body_bytes must be at least 1024"
        );
        if let Some(url) = &self.database_url {
            anyhow::ensure!(
                url.starts_with("sqlite:")
                    || url.starts_with("postgres:")
                    || url.starts_with("postgresql:"),
                "database_url must start with sqlite: or postgres:"
            );
        }
        if let Some(url) = &self.redis_url {
            anyhow::ensure!(
                url.starts_with("redis://") || url.starts_with("rediss://"),
                "redis_url must start with redis:// or rediss://"
            );
        }
        if let Some(url) = &self.llm_base_url {
            anyhow::ensure!(
                (url.starts_with("http://") || url.starts_with("https://"))
                    && !url.chars().any(char::is_whitespace),
                "llm_base_url must be an http:// or https:// URL such as https://api.openai.com/v1"
            );
        }
        anyhow::ensure!(
            self.video_max_bytes >= 1024 * 1024,
            "video_max_bytes must be at least 1048576 (1 MiB)"
        );
        anyhow::ensure!(
            (1..=3600).contains(&self.video_max_seconds),
            "video_max_seconds must be between 1 and 3600"
        );
        let model = self.llm_model.trim();
        anyhow::ensure!(
            !model.is_empty() && model.len() <= 200 && !model.chars().any(char::is_control),
            "llm_model must be a model name such as gpt-4o-mini"
        );
        if let Some(key) = &self.llm_api_key {
            // It goes into an Authorization header as is.
            anyhow::ensure!(
                key.bytes().all(|b| b.is_ascii_graphic()),
                "llm_api_key may only contain visible ASCII characters"
            );
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}/livecamp.db", self.data_dir.display()),
        }
    }

    pub fn uses_postgres(&self) -> bool {
        self.database_url().starts_with("postgres")
    }

    /// Base URL printed for people.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
            .unwrap_or_else(|| self.public_url().starts_with("https://"))
    }

    /// The configuration as JSON with every secret replaced by `***` and passwords in URLs hidden.
    pub fn redacted(&self) -> serde_json::Value {
        // Serialising a plain struct of strings and numbers cannot fail.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            for key in SECRET_KEYS {
                if let Some(v) = map.get_mut(*key)
                    && !(v.is_null() || v.as_str() == Some(""))
                {
                    *v = serde_json::Value::String("***".into());
                }
            }
            for key in ["database_url", "redis_url"] {
                if let Some(serde_json::Value::String(url)) = map.get_mut(key) {
                    *url = redact_url_password(url);
                }
            }
            map.insert(
                "effective_database_url".into(),
                redact_url_password(&self.database_url()).into(),
            );
        }
        value
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url_password("redis://:pw@h:6379"),
            "redis://:***@h:6379"
        );
        assert_eq!(
            redact_url_password("postgres://u@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(
            redact_url_password("sqlite://./data/x.db"),
            "sqlite://./data/x.db"
        );
    }

    #[test]
    fn redacted_hides_secrets() {
        let config = Config {
            demo_password: Some("hunter22".into()),
            field_keys: "k1:abc".into(),
            llm_api_key: Some("sk-live-secret".into()),
            ..Config::default()
        };
        let text = config.redacted().to_string();
        assert!(!text.contains("hunter22"));
        assert!(!text.contains("sk-live-secret"));
        assert!(!text.contains("k1:abc"));
        assert!(text.contains("***"));
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().expect("defaults are valid");
        let bad = Config {
            listen: "nonsense".into(),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            llm_base_url: Some("api.openai.com".into()),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            llm_api_key: Some("sk-with\nnewline".into()),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
