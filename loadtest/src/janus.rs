//! SFU benchmark 2: the fan-out of [`crate::sfu`] against Janus (its streaming plugin), with
//! the same stream, the same subscribers and the same figures, for a ratio.
//!
//! Janus 1.1 takes a broadcast in as plain RTP on an "rtp" mountpoint's UDP ports (it has no
//! WHIP), so the publisher sends the synthetic stream there unencrypted. Each subscriber speaks
//! Janus's HTTP API — create a session, attach the streaming plugin, `watch` the mountpoint,
//! answer Janus's offer with `start` (candidates in the SDP, no trickle) — then completes ICE
//! (Janus is the full, controlling agent here) and DTLS, and counts the SRTP packets that
//! arrive exactly like a livecamp subscriber ([`crate::sfu::count`]). One difference: Janus
//! renumbers each viewer's RTP sequence numbers from 1, so the publisher's payloads carry their
//! own sequence number and each subscriber decrypts one packet per track to learn the offset.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::sfu::{
    Driver, Measure, Publishing, Renumbering, Synthetic, SyntheticPacket, Tally, Window,
    add_host_candidate, count, measure, new_pc_with, rtc_err,
};

type Res<T> = anyhow::Result<T>;

#[derive(Debug, Clone, clap::Args)]
pub struct JanusArgs {
    /// Janus's HTTP transport, without the API path (e.g. http://127.0.0.1:8088).
    #[arg(long)]
    base: String,
    /// Janus's process id (CPU time).
    #[arg(long)]
    server_pid: u32,
    /// The streaming plugin's mountpoint (type "rtp", VP8 and Opus).
    #[arg(long, default_value_t = 1)]
    mountpoint: u64,
    /// Where the mountpoint takes its RTP in.
    #[arg(long, default_value = "127.0.0.1")]
    rtp_host: IpAddr,
    /// The mountpoint's video (VP8, payload type 96) port.
    #[arg(long)]
    video_port: u16,
    /// The mountpoint's audio (Opus, payload type 111) port.
    #[arg(long)]
    audio_port: u16,
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Measured seconds, after every subscriber is connected and a warm-up second.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    video_kbps: u64,
    /// Janus's `event_loops` setting, for the record (0: Janus's default, a thread per handle).
    #[arg(long)]
    event_loops: Option<u32>,
}

/// The RTP payload types of the mountpoint's tracks (video, audio).
const PAYLOAD_TYPES: [u8; 2] = [96, 111];

/// Janus's HTTP API (the REST transport, `/janus`).
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// POSTs a request to `path` (under `/janus`); Janus answers 200 even to a refused request,
    /// with `"janus": "error"`.
    async fn post(&self, path: &str, mut body: Value) -> Res<Value> {
        body["transaction"] = json!(format!("{:016x}", rand::random::<u64>()));
        let reply: Value = self
            .http
            .post(format!("{}/janus{path}", self.base))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(reply["janus"] != "error", "POST {path}: {}", reply["error"]);
        Ok(reply)
    }

    /// A new object's id, from a `"janus": "success"` reply.
    fn id(reply: &Value) -> Res<u64> {
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no id in {reply}"))
    }

    /// Creates a session and attaches the streaming plugin: (session, handle).
    async fn attach(&self) -> Res<(u64, u64)> {
        let session = Self::id(&self.post("", json!({"janus": "create"})).await?)?;
        let handle = Self::id(
            &self
                .post(
                    &format!("/{session}"),
                    json!({"janus": "attach", "plugin": "janus.plugin.streaming"}),
                )
                .await?,
        )?;
        Ok((session, handle))
    }

    /// Sends the plugin a message, with a JSEP if given; Janus acknowledges at once and
    /// answers, if at all, by an event.
    async fn message(
        &self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Res<()> {
        let mut request = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        self.post(&format!("/{session}/{handle}"), request).await?;
        Ok(())
    }

    /// Long-polls the session's events until the plugin's offer for `handle` arrives.
    async fn offer(&self, session: u64, handle: u64) -> Res<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let reply: Value = self
                .http
                .get(format!("{}/janus/{session}?maxev=1", self.base))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            // With `maxev`, Janus sends an array of events; a keepalive when none came in 30 s.
            let events = match reply {
                Value::Array(events) => events,
                event => vec![event],
            };
            for event in events {
                if event["sender"].as_u64() != Some(handle) {
                    continue;
                }
                let data = &event["plugindata"]["data"];
                anyhow::ensure!(data["error"].is_null(), "watch: {}", data["error"]);
                if event["jsep"]["type"] == "offer"
                    && let Some(sdp) = event["jsep"]["sdp"].as_str()
                {
                    return Ok(sdp.to_owned());
                }
            }
        }
        anyhow::bail!("no offer from Janus in 30 s")
    }
}

/// The address of the first IPv4 host candidate in an SDP: the subscriber binds its socket to
/// the same address (Janus gathers no candidate on the loopback interface).
fn host_address(sdp: &str) -> Res<Ipv4Addr> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no IPv4 host candidate in Janus's offer"))
}

/// One RTP datagram, unencrypted, for the mountpoint.
fn datagram(packet: &SyntheticPacket, ssrc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + packet.payload.len());
    out.push(0x80); // version 2, no padding, no extension, no CSRC
    out.push((u8::from(packet.marker) << 7) | PAYLOAD_TYPES[packet.track]);
    out.extend_from_slice(&packet.seq.to_be_bytes());
    out.extend_from_slice(&packet.timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&packet.payload);
    out
}

/// The publisher: sends the synthetic stream (its payloads stamped with their sequence
/// numbers) as RTP to the mountpoint's ports until `stop`, counting what it sends in the window.
async fn start_publisher(to: [SocketAddr; 2], video_kbps: u64) -> Res<Publishing> {
    let socket = UdpSocket::bind(SocketAddr::new(to[0].ip(), 0)).await?;
    let ssrc = [rand::random::<u32>(), rand::random::<u32>()];
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new(Window::default());
    let task = {
        let (stop, window) = (stop.clone(), window.clone());
        tokio::spawn(async move {
            let mut stream = Synthetic::new(video_kbps, true);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                window.open(stream.next_seq());
                if window.ended() {
                    continue;
                }
                for packet in stream.due() {
                    let sent = socket
                        .send_to(&datagram(&packet, ssrc[packet.track]), to[packet.track])
                        .await;
                    if sent.is_ok() {
                        window.sent_one(packet.track, packet.seq);
                    }
                }
            }
        })
    };
    Ok(Publishing { task, stop, window })
}

/// One subscriber's signalling: watch, answer Janus's offer, start. The connection is then
/// ready to be driven, on a socket bound to the address of Janus's host candidate.
async fn subscribe(api: &Api, mountpoint: u64) -> Res<Driver> {
    let (session, handle) = api.attach().await?;
    api.message(
        session,
        handle,
        json!({"request": "watch", "id": mountpoint}),
        None,
    )
    .await?;
    let offer = api.offer(session, handle).await?;
    let socket = Arc::new(UdpSocket::bind((host_address(&offer)?, 0)).await?);
    let local = socket.local_addr()?;
    // livecamp accepts AES-128-GCM only; Janus, left to choose, takes AES-256-GCM.
    let settings = SettingEngineBuilder::new()
        .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm])
        .build();
    let mut pc = new_pc_with(Some(settings))?;
    pc.set_remote_description(
        Instant::now(),
        RTCSessionDescription::offer(offer).map_err(rtc_err)?,
    )
    .map_err(rtc_err)?;
    add_host_candidate(&mut pc, local)?;
    let answer = pc.create_answer(None).map_err(rtc_err)?;
    pc.set_local_description(Instant::now(), answer)
        .map_err(rtc_err)?;
    let sdp = pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    api.message(
        session,
        handle,
        json!({"request": "start"}),
        // All our candidates are in the SDP: Janus is not to wait for trickled ones.
        Some(json!({"type": "answer", "sdp": sdp, "trickle": false})),
    )
    .await?;
    Ok(Driver::new(pc, socket, local))
}

pub async fn janus(args: JanusArgs) -> Res<()> {
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: args.base.trim_end_matches('/').to_owned(),
    });
    let publishing = start_publisher(
        [
            SocketAddr::new(args.rtp_host, args.video_port),
            SocketAddr::new(args.rtp_host, args.audio_port),
        ],
        args.video_kbps,
    )
    .await?;

    // The subscribers.
    let tally = Tally::new(&publishing);
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    let join_started = Instant::now();
    for i in 0..args.subscribers {
        let (api, tally, gate) = (api.clone(), tally.clone(), gate.clone());
        let mountpoint = args.mountpoint;
        tasks.push(tokio::spawn(async move {
            let offered = Instant::now();
            let subscribed = {
                let _permit = gate.acquire().await?;
                subscribe(&api, mountpoint).await
            };
            let driver = subscribed.inspect_err(|e| eprintln!("subscriber {i}: {e:#}"))?;
            count(driver, &tally, offered, Renumbering::UNKNOWN).await;
            anyhow::Ok(())
        }));
    }
    let mut result = measure(Measure {
        benchmark: "sfu-janus",
        subscribers: args.subscribers,
        duration: args.duration,
        video_kbps: args.video_kbps,
        server_pid: args.server_pid,
        join_started,
        publishing,
        tasks,
        tally,
    })
    .await?;
    result["server"] = json!("janus");
    if let Some(loops) = args.event_loops {
        result["janus_event_loops"] = json!(loops);
    }
    println!("{result}");
    Ok(())
}
