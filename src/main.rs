//! The `livecamp` command: `serve` (default), `migrate`, `demo-data`, `config`, `audit verify`,
//! `keys generate` and `keys reencrypt`.

use std::path::PathBuf;

/// jemalloc returns freed memory to the system and fragments less than glibc's per-thread
/// arenas under tens of thousands of sockets (measured: docs/benchmarks.md).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use foundation::AppState;
use foundation::config::Config;

#[derive(Parser)]
#[command(
    name = "livecamp",
    version,
    about = "马兰花网络创业培训教学辅助平台 — live-commerce streaming server with a training overlay"
)]
struct Cli {
    /// Configuration file (TOML); defaults to ./livecamp.toml when present.
    #[arg(long, short, env = "LIVECAMP_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Create the demo data if the database has no accounts, and print the demo accounts.
    DemoData,
    /// Add practice trainees (`{prefix}00001` …) to a class, for practice with many buyers and
    /// for load tests; all get the given password.
    PracticeAccounts {
        #[arg(long)]
        count: u32,
        /// The class (default: the first one).
        #[arg(long)]
        class: Option<i64>,
        #[arg(long, default_value = "practice")]
        prefix: String,
        #[arg(long, env = "LIVECAMP_PRACTICE_PASSWORD")]
        password: String,
    },
    /// Print the effective configuration, secrets hidden.
    Config,
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Encryption keys of sensitive fields.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a freshly generated `field_keys` / `lookup_key` pair for a configuration file.
    Generate,
    /// After putting a new key first in `field_keys`, rewrite every encrypted field under it.
    Reencrypt,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit status 1 and the first broken link when it does not hold.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("livecamp: {e:#}");
            return ExitCode::from(2);
        }
    };
    livecamp::init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("livecamp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("livecamp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&config.redacted())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            let (field_keys, lookup_key) = foundation::crypto::Keys::generate();
            println!("field_keys = \"{field_keys}\"\nlookup_key = \"{lookup_key}\"");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Reencrypt,
        } => {
            let state = AppState::build(config).await?;
            let report = foundation::identity::rekey::reencrypt_all(
                &state.db,
                state.identity.keys(),
                &state.audit,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            AppState::build(config).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoData => {
            let state = AppState::build(config).await?;
            match foundation::demo::ensure_demo_data(&state).await? {
                Some(demo) => print!("{}", demo.render()),
                None => match foundation::demo::saved_credentials(&state) {
                    Some(saved) => print!("demo data already present\n{saved}"),
                    None => println!("the database already has accounts; no demo data created"),
                },
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::PracticeAccounts {
            count,
            class,
            prefix,
            password,
        } => {
            let password = foundation::identity::fields::NewPassword::parse(&password)
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            let state = AppState::build(config).await?;
            let created =
                foundation::demo::add_practice_trainees(&state, class, &prefix, count, &password)
                    .await?;
            println!("{created} practice trainees created");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let state = AppState::build(config).await?;
            let report = state.audit.verify().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve => serve(config).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let demo_data = config.demo_data;
    let state = AppState::build(config).await?;
    let demo_text = if demo_data {
        match foundation::demo::ensure_demo_data(&state).await? {
            Some(demo) => Some(demo.render()),
            None => foundation::demo::saved_credentials(&state),
        }
    } else {
        None
    };
    let listener = livecamp::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let url = state.config.public_url();
    println!();
    println!("  livecamp 已启动 is running at {url}");
    println!(
        "  database: {} · bus: {}",
        state.db.backend().name(),
        state.bus.health().kind
    );
    if let Some(text) = demo_text {
        for line in text.lines() {
            println!("  {line}");
        }
    }
    println!();
    tracing::info!(%url, "listening");
    livecamp::serve(listener, state, livecamp::shutdown_signal()).await
}
