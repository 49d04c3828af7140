//! Load generators for livecamp's benchmarks (docs/benchmarks.md). One binary, one subcommand
//! per benchmark; each prints a JSON line of results.
//!
//! The hub benchmarks drive livecamp's `/ws` or a comparison peer (loadtest/peers: Node `ws`,
//! socket.io) with the same protocol, and read the server's CPU time and RSS from /proc, so a
//! figure is deliveries per server CPU-second, not per wall second.

mod flash;
mod hub;
mod hub_cluster;
mod hub_reconnect;
mod janus;
mod proc_stats;
mod replay;
mod sfu;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadtest", about = "livecamp load generators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One room, many viewers, one host broadcasting fixed-size chat at a fixed rate.
    #[command(name = "hub-fanout")]
    Fanout(hub::FanoutArgs),
    /// Many idle connections in one room: RSS growth per connection.
    #[command(name = "hub-idle")]
    Idle(hub::IdleArgs),
    /// A like storm into one room: is the total exact?
    #[command(name = "hub-likes")]
    Likes(hub::LikesArgs),
    /// Every viewer dropped at once: time until all have resumed, and no event missed.
    #[command(name = "hub-reconnect")]
    Reconnect(hub_reconnect::ReconnectArgs),
    /// One room across several nodes sharing Redis, viewers held by several child processes.
    #[command(name = "hub-cluster")]
    Cluster(hub_cluster::ClusterArgs),
    /// One publisher (WHIP) to N subscribers (WHEP): forwarded packets per SFU CPU-second.
    #[command(name = "sfu-fanout")]
    Sfu(sfu::SfuArgs),
    /// sfu-fanout against Janus's streaming plugin (plain RTP in, N viewers by its HTTP API).
    #[command(name = "sfu-janus")]
    SfuJanus(janus::JanusArgs),
    /// Players joining and leaving by the thousand: the SFU's RSS before and after.
    #[command(name = "sfu-churn")]
    Churn(sfu::ChurnArgs),
    /// Packaging time of a synthetic class recording into a replay.
    #[command(name = "replay-package")]
    Replay(replay::ReplayArgs),
    /// A flash sale or a red packet: many buyers at once on a small stock, over HTTP.
    #[command(name = "commerce")]
    Commerce(flash::CommerceArgs),
    /// The naive baseline of a flash sale: one PostgreSQL `SELECT … FOR UPDATE` transaction per
    /// attempt.
    #[command(name = "commerce-naive")]
    CommerceNaive(flash::NaiveArgs),
    /// (Started by hub-cluster) one slice of the viewers.
    #[command(name = "hub-viewers", hide = true)]
    Viewers(hub_cluster::ViewersArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Command::Replay(args) = cli.command {
        return replay::replay(args);
    }
    runtime.block_on(async {
        match cli.command {
            Command::Fanout(args) => hub::fanout(args).await,
            Command::Idle(args) => hub::idle(args).await,
            Command::Likes(args) => hub::likes(args).await,
            Command::Reconnect(args) => hub_reconnect::reconnect(args).await,
            Command::Cluster(args) => hub_cluster::cluster(args).await,
            Command::Viewers(args) => hub_cluster::viewers(args).await,
            Command::Sfu(args) => sfu::sfu(args).await,
            Command::SfuJanus(args) => janus::janus(args).await,
            Command::Commerce(args) => flash::run(args).await,
            Command::CommerceNaive(args) => flash::naive(args).await,
            Command::Churn(args) => sfu::churn(args).await,
            Command::Replay(_) => Ok(()), // handled above: no runtime needed
        }
    })
}
