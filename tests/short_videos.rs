//! Short videos (短视频) over HTTP, on both storage backends: a clip made by the ffmpeg CLI is
//! uploaded, transcoded to H.264/AAC MP4 with a JPEG cover, played with range requests by the
//! owner, a classmate and the room's viewers, and deleted; bad uploads are clear 4xx answers;
//! after a restart, interrupted jobs are resumed or failed, never left processing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestApp, assert_error, spawn_app, spawn_app_with};
use foundation::AppState;
use foundation::clock::SystemClock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A clip made by the ffmpeg CLI from its test sources (`args` are the output options).
fn clip(dir: &Path, name: &str, inputs: &[&str], args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(inputs)
        .args(args)
        .arg(&path)
        .status()
        .expect("the ffmpeg CLI is installed (scripts/test.sh makes sure)");
    assert!(status.success(), "ffmpeg could not make {name}");
    path
}

/// `seconds` of a test picture and a tone as VP8/Vorbis WebM: nothing a browser plays as is in
/// an MP4, so the server must transcode both tracks.
fn webm(dir: &Path, seconds: &str) -> Vec<u8> {
    let path = clip(
        dir,
        &format!("clip-{seconds}.webm"),
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ],
        &[
            "-t",
            seconds,
            "-c:v",
            "libvpx",
            "-b:v",
            "300k",
            "-c:a",
            "libvorbis",
        ],
    );
    std::fs::read(path).expect("clip")
}

fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// Opens `user`'s shop with one listed product; returns (token, shop id, product id).
async fn open_shop(app: &TestApp, user: &str) -> (String, i64, i64) {
    let token = app.token(user).await;
    let (status, shop) = app
        .send(
            Method::POST,
            &token,
            "/api/v1/shops",
            json!({"name": format!("{user} 的小店"), "category": "食品"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shop}");
    let shop_id = shop["id"].as_i64().expect("shop id");
    let (status, product) = app
        .send(
            Method::POST,
            &token,
            &format!("/api/v1/shops/{shop_id}/products"),
            json!({"title": "长白山野生蓝莓干", "listed": true,
                   "skus": [{"spec": "250g", "price_cents": 3990, "stock": 10}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    (token, shop_id, product["id"].as_i64().expect("product id"))
}

async fn upload(
    app: &TestApp,
    token: &str,
    product: i64,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = common::api()
        .post(app.url(&format!("/api/v1/products/{product}/videos")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls a video until it is no longer processing.
async fn settled(app: &TestApp, token: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, video) = app.get(token, &format!("/api/v1/videos/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{video}");
        if video["status"] != "processing" {
            return video;
        }
        assert!(
            Instant::now() < deadline,
            "video {id} still processing: {video}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fetch(
    app: &TestApp,
    token: &str,
    path: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = common::api().get(app.url(path)).bearer_auth(token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

async fn upload_transcode_play_and_delete(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, shop, product) = open_shop(&app, "trainee01").await;

    let (status, video) = upload(&app, &host, product, "video/webm", webm(dir.path(), "3")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{video}");
    assert_eq!(video["status"], "processing");
    assert_eq!(video["file_url"], Value::Null);
    let id = video["id"].as_i64().expect("video id");

    let video = settled(&app, &host, id).await;
    assert_eq!(video["status"], "ready", "{video}");
    let duration = video["duration_ms"].as_i64().expect("duration");
    assert!((2900..=3150).contains(&duration), "{video}");
    assert_eq!(
        (video["width"].as_i64(), video["height"].as_i64()),
        (Some(320), Some(240))
    );
    assert_eq!(video["has_audio"], true);
    assert_eq!(video["error"], Value::Null);
    let file_url = video["file_url"].as_str().expect("file url").to_owned();
    let cover_url = video["cover_url"].as_str().expect("cover url").to_owned();

    // The whole file: H.264 and AAC, three seconds.
    let (status, headers, mp4) = fetch(&app, &host, &file_url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(Some(mp4.len() as i64), video["bytes"].as_i64());
    let saved = dir.path().join("downloaded.mp4");
    std::fs::write(&saved, &mp4).expect("save");
    let probe = ffprobe(&saved);
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe}");
    let seconds: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!((2.9..=3.15).contains(&seconds), "{seconds} s");

    // A range, as a player seeking asks for it.
    let (status, headers, part) = fetch(&app, &host, &file_url, Some("bytes=1000-1999")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000-1999/{}", mp4.len()).as_str()
    );
    assert_eq!(part, mp4[1000..2000]);

    // The cover is a JPEG of the video's size.
    let (status, headers, jpeg) = fetch(&app, &host, &cover_url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
    let cover = dir.path().join("cover.jpg");
    std::fs::write(&cover, &jpeg).expect("save");
    let probe = ffprobe(&cover);
    assert_eq!(probe["streams"][0]["codec_name"], "mjpeg");
    assert_eq!(probe["streams"][0]["width"], 320);

    // The product shows it: to its owner, in the shop's list, and to a classmate, who can play it.
    let (_, shown) = app.get(&host, &format!("/api/v1/products/{product}")).await;
    assert_eq!(shown["videos"][0]["id"], id, "{shown}");
    assert_eq!(shown["videos"][0]["file_url"], file_url.as_str());
    assert_eq!(shown["videos"][0]["cover_url"], cover_url.as_str());
    assert_eq!(shown["videos"][0]["duration_ms"], duration);
    let buyer = app.token("trainee02").await;
    let (_, listed) = app
        .get(&buyer, &format!("/api/v1/shops/{shop}/products"))
        .await;
    assert_eq!(listed[0]["videos"][0]["id"], id, "{listed}");
    let (status, _, bytes) = fetch(&app, &buyer, &file_url, Some("bytes=0-99")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes, mp4[..100]);
    let (status, list) = app
        .get(&buyer, &format!("/api/v1/products/{product}/videos"))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["videos"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["max_videos"], 5);

    // In the live room: the shelf carries the videos.
    let room = app.create_room(&host, "蓝莓干专场").await;
    let (status, body) = app
        .send(
            Method::POST,
            &host,
            &format!("/api/v1/rooms/{room}/products"),
            json!({"product_id": product}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, state) = app
        .get(&buyer, &format!("/api/v1/rooms/{room}/commerce"))
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["shelf"][0]["videos"][0]["id"], id, "{state}");
    assert_eq!(
        state["shelf"][0]["videos"][0]["cover_url"],
        cover_url.as_str()
    );

    // Only the owner deletes it; then it is gone, files and all.
    let (status, body) = app
        .send(
            Method::DELETE,
            &buyer,
            &format!("/api/v1/videos/{id}"),
            json!({}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, _) = app
        .send(
            Method::DELETE,
            &host,
            &format!("/api/v1/videos/{id}"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get(&host, &format!("/api/v1/videos/{id}")).await;
    assert_error(status, &body, 404, "not_found");
    let (status, _, _) = fetch(&app, &host, &file_url, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, shown) = app.get(&host, &format!("/api/v1/products/{product}")).await;
    assert_eq!(shown["videos"], json!([]));
    let folder = app.state.config.data_dir.join(format!("videos/{id}"));
    assert!(!folder.exists(), "{} is still there", folder.display());
}

async fn bad_uploads_are_clear_4xx(backend: Backend) {
    // Small limits, so "too large" and "too long" are cheap to reach.
    let app = spawn_app_with(
        backend,
        |c| {
            c.video_max_bytes = 1024 * 1024;
            c.video_max_seconds = 2;
        },
        Arc::new(SystemClock),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, _, product) = open_shop(&app, "trainee01").await;

    // Not a video at all: refused at once, nothing stored.
    let junk: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (status, body) = upload(&app, &host, product, "video/mp4", junk).await;
    assert_error(status, &body, 415, "video_unsupported");
    // Sound without pictures.
    let ogg = clip(
        dir.path(),
        "sound.ogg",
        &["-f", "lavfi", "-i", "sine"],
        &["-t", "1", "-c:a", "libvorbis"],
    );
    let (status, body) = upload(
        &app,
        &host,
        product,
        "application/octet-stream",
        std::fs::read(ogg).expect("ogg"),
    )
    .await;
    assert_error(status, &body, 415, "video_unsupported");
    // Empty.
    let (status, body) = upload(&app, &host, product, "video/mp4", Vec::new()).await;
    assert_error(status, &body, 400, "validation_failed");
    // A form, or no content type: the raw file is wanted.
    let (status, body) = upload(
        &app,
        &host,
        product,
        "multipart/form-data; boundary=x",
        b"--x".to_vec(),
    )
    .await;
    assert_error(status, &body, 415, "unsupported_media_type");
    // Longer than video_max_seconds.
    let (status, body) = upload(&app, &host, product, "video/webm", webm(dir.path(), "3")).await;
    assert_error(status, &body, 400, "video_too_long");
    // Larger than video_max_bytes.
    let (status, body) = upload(&app, &host, product, "video/mp4", vec![0u8; 1536 * 1024]).await;
    assert_error(status, &body, 413, "video_too_large");
    assert_eq!(app.count("product_videos").await, 0);
    let incoming = app.state.config.data_dir.join("videos/incoming");
    assert_eq!(
        std::fs::read_dir(&incoming).expect("incoming").count(),
        0,
        "refused uploads leave no file behind"
    );

    // Someone else's product: a classmate may see it but not add to it; unknown ids are 404.
    let (other, _, _) = open_shop(&app, "trainee02").await;
    let (status, body) = upload(&app, &other, product, "video/webm", webm(dir.path(), "1")).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = upload(&app, &host, 999_999, "video/webm", webm(dir.path(), "1")).await;
    assert_error(status, &body, 404, "not_found");
    for path in [
        "/api/v1/videos/999999",
        "/api/v1/videos/999999/file",
        "/api/v1/videos/999999/cover",
    ] {
        let (status, body) = app.get(&host, path).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = app
        .send(Method::DELETE, &host, "/api/v1/videos/999999", json!({}))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app.get(&host, "/api/v1/videos/abc").await;
    assert_error(status, &body, 400, "bad_request");

    // A raw MPEG-4 stream does not say how long it is: accepted, and failed once decoding finds
    // it longer than video_max_seconds, with a code, no file and nothing left on disk.
    let raw = clip(
        dir.path(),
        "raw.m4v",
        &["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"],
        &["-t", "3", "-c:v", "mpeg4", "-f", "m4v"],
    );
    let (status, body) = upload(
        &app,
        &host,
        product,
        "application/octet-stream",
        std::fs::read(raw).expect("raw"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_i64().expect("id");
    let video = settled(&app, &host, id).await;
    assert_eq!(video["status"], "failed", "{video}");
    assert_eq!(video["error"], "video_too_long", "{video}");
    assert_eq!(video["file_url"], Value::Null);
    let (status, body) = app.get(&host, &format!("/api/v1/videos/{id}/file")).await;
    assert_error(status, &body, 404, "not_found");
    // Only its owner sees a video that is not ready.
    let (status, body) = app.get(&other, &format!("/api/v1/videos/{id}")).await;
    assert_error(status, &body, 404, "not_found");
    let folder = app.state.config.data_dir.join(format!("videos/{id}"));
    let left: Vec<_> = std::fs::read_dir(&folder)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed video keeps no files: {left:?}");
    // A failed video does not count against the product's five.
    let (_, list) = app
        .get(&host, &format!("/api/v1/products/{product}/videos"))
        .await;
    assert_eq!(list["videos"][0]["status"], "failed", "{list}");
}

/// Serves a second node on `state` (a restart on the same database and data directory).
async fn restart(state: AppState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = livecamp::serve(listener, state, async {
            let _ = rx.await;
        })
        .await;
    });
    (base, tx)
}

async fn interrupted_jobs_resume_or_fail_after_a_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, _, product) = open_shop(&app, "trainee01").await;
    let owner: i64 = sqlx::query_scalar("SELECT owner_id FROM shops")
        .fetch_one(app.state.db.pool())
        .await
        .expect("owner");
    let videos = app.state.config.data_dir.join("videos");
    let store =
        std::fs::read_to_string(videos.join("store-id")).expect("the store is stamped at start");
    // Three jobs a crash left processing: one with its upload, one without, one that already
    // started twice.
    let mut ids = Vec::new();
    for attempts in [0i64, 0, 2] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO product_videos (product_id, uploader_id, status, store_id, attempts, source_bytes, created_at) \
             VALUES ($1, $2, 'processing', $3, $4, 1, 0) RETURNING id",
        )
        .bind(product)
        .bind(owner)
        .bind(store.trim())
        .bind(attempts)
        .fetch_one(app.state.db.pool())
        .await
        .expect("insert");
        ids.push(id);
    }
    let clip = webm(dir.path(), "2");
    for (i, id) in ids.iter().enumerate() {
        let folder = videos.join(id.to_string());
        std::fs::create_dir_all(&folder).expect("folder");
        if i != 1 {
            std::fs::write(folder.join("source"), &clip).expect("source");
        }
        // What the crash left half-written.
        std::fs::write(folder.join("video.mp4.part"), b"half").expect("part");
    }
    // Before the restart the half-written file is never served.
    let (status, body) = app
        .get(&host, &format!("/api/v1/videos/{}/file", ids[0]))
        .await;
    assert_error(status, &body, 409, "video_not_ready");

    app.stop().await;
    let state = AppState::build_with_clock((*app.state.config).clone(), Arc::new(SystemClock))
        .await
        .expect("restarted state");
    let (base, stop) = restart(state).await;
    let get = |id: i64| {
        let (base, host) = (base.clone(), host.clone());
        async move {
            common::api()
                .get(format!("{base}/api/v1/videos/{id}"))
                .bearer_auth(host)
                .send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let states = loop {
        let mut states = Vec::new();
        for id in &ids {
            states.push(get(*id).await);
        }
        if states.iter().all(|v| v["status"] != "processing") {
            break states;
        }
        assert!(Instant::now() < deadline, "still processing: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(states[0]["status"], "ready", "{}", states[0]);
    assert!(videos.join(format!("{}/video.mp4", ids[0])).exists());
    assert!(!videos.join(format!("{}/video.mp4.part", ids[0])).exists());
    assert!(!videos.join(format!("{}/source", ids[0])).exists());
    for video in &states[1..] {
        assert_eq!(video["status"], "failed", "{video}");
        assert_eq!(video["error"], "interrupted", "{video}");
    }
    let _ = stop.send(());
}

backend_tests!(
    upload_transcode_play_and_delete,
    bad_uploads_are_clear_4xx,
    interrupted_jobs_resume_or_fail_after_a_restart,
);
