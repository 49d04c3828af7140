//! AI live scripts (直播脚本) over HTTP, on both storage backends: the built-in template when no
//! model is configured; a model behind a loopback fake of the OpenAI chat-completions wire
//! protocol (plain JSON and streamed `data:` chunks ending in `[DONE]`), answered as JSON or as
//! our own Server-Sent Events; the model's failures as clear error codes; saved versions; bad
//! input.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use common::{Backend, TestApp, assert_error, spawn_app, spawn_app_with};
use foundation::clock::SystemClock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = "livecamp-test-model";
const KEY: &str = "sk-test-0123456789";
const PRODUCT: &str = "长白山野生蓝莓干";

// ---------------------------------------------------------------------------------------------
// A fake OpenAI-compatible endpoint.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Answers `answer` (as JSON, or streamed in small chunks).
    Answer,
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// HTTP 200 whose body is not the protocol (streamed: a `data:` line that is not JSON).
    Garbage,
}

struct FakeState {
    behaviour: Behaviour,
    answer: String,
    requests: Vec<(Option<String>, Value)>,
}

#[derive(Clone)]
struct FakeOpenAi {
    base: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeOpenAi {
    async fn start(answer: String) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            behaviour: Behaviour::Answer,
            answer,
            requests: Vec::new(),
        }));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = shared.clone();
                async move { completions(&state, &headers, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, state }
    }

    fn set(&self, behaviour: Behaviour, answer: Option<String>) {
        let mut state = self.state.lock().unwrap();
        state.behaviour = behaviour;
        if let Some(answer) = answer {
            state.answer = answer;
        }
    }

    fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn completions(state: &Mutex<FakeState>, headers: &HeaderMap, body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (behaviour, answer) = {
        let mut state = state.lock().unwrap();
        state.requests.push((auth.clone(), request.clone()));
        (state.behaviour, state.answer.clone())
    };
    if auth.as_deref() != Some(&format!("Bearer {KEY}")) {
        let error = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                      "param": null, "code": "invalid_api_key"}});
        return (AxumStatus::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let streaming = request["stream"] == json!(true);
    match (behaviour, streaming) {
        (Behaviour::ServerError, _) => {
            (AxumStatus::INTERNAL_SERVER_ERROR, "upstream exploded").into_response()
        }
        (Behaviour::Garbage, false) => (
            [("content-type", "application/json")],
            "<html>not an answer</html>",
        )
            .into_response(),
        (Behaviour::Garbage, true) => (
            [("content-type", "text/event-stream")],
            "data: this is not a chunk\n\n",
        )
            .into_response(),
        (Behaviour::Answer, false) => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_767_225_600,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 200, "total_tokens": 300}
        }))
        .into_response(),
        (Behaviour::Answer, true) => {
            let chunk = |delta: Value, finish: Value| {
                let chunk = json!({
                    "id": "chatcmpl-fake", "object": "chat.completion.chunk",
                    "created": 1_767_225_600, "model": model, "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
                });
                format!("data: {chunk}\n\n")
            };
            let mut body = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
            let chars: Vec<char> = answer.chars().collect();
            for piece in chars.chunks(40) {
                let piece: String = piece.iter().collect();
                body.push_str(&chunk(json!({"content": piece}), Value::Null));
            }
            body.push_str(&chunk(json!({}), json!("stop")));
            body.push_str("data: [DONE]\n\n");
            ([("content-type", "text/event-stream")], body).into_response()
        }
    }
}

/// The script the fake model writes, fenced the way chat models like to.
fn model_answer(product_id: i64) -> String {
    let script = json!({
        "title": "蓝莓干宝妈专场",
        "opening": "家人们晚上好，欢迎来到直播间！今天给宝妈们带来一款零食。",
        "segments": [{
            "product_id": product_id, "product": PRODUCT,
            "selling_points": ["无添加蔗糖", "250g 和 500g 礼盒两种规格", "秒杀价 29.90 元"],
            "talk": "这款蓝莓干酸甜适口，宝宝也爱吃。",
            "interaction": ["想要的扣 1", "点赞到 1 万上福利"],
            "activity_cue": "讲完卖点开秒杀，倒数 3、2、1 上链接",
            "duration_minutes": 50
        }],
        "closing": "下期预告：周五晚八点不见不散，记得点关注！"
    });
    format!(
        "```json\n{}\n```",
        serde_json::to_string_pretty(&script).unwrap()
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Opens `username`'s shop with one product of two SKUs; returns (token, product id).
async fn open_shop(app: &TestApp, username: &str, title: &str) -> (String, i64) {
    let token = app.token(username).await;
    let (status, shop) = app
        .send(
            Method::POST,
            &token,
            "/api/v1/shops",
            json!({"name": format!("{username}的小店"), "category": "食品"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shop}");
    let (status, product) = app
        .send(
            Method::POST,
            &token,
            &format!("/api/v1/shops/{}/products", shop["id"]),
            json!({"title": title, "description": "无添加蔗糖，酸甜适口。小包装随身带！", "listed": true,
                   "skus": [{"spec": "250g", "price_cents": 3990, "stock": 100},
                            {"spec": "500g 礼盒", "price_cents": 6990, "stock": 50}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    (token, product["id"].as_i64().unwrap())
}

fn generate_body(product: i64) -> Value {
    json!({
        "product_ids": [product],
        "activities": [
            {"kind": "flash_sale", "product_id": product, "price_cents": 2990, "stock": 20, "per_user_limit": 2},
            {"kind": "red_packet", "total_cents": 10000, "count": 50},
            {"kind": "coupon", "title": "进店礼", "threshold_cents": 9900, "discount_cents": 1000},
            {"kind": "lucky_bag", "prize": "蓝莓干一袋", "winners": 3, "keyword": "蓝莓真香", "duration_seconds": 300}
        ],
        "duration_minutes": 60,
        "audience": "宝妈"
    })
}

async fn generate(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.send(Method::POST, token, "/api/v1/live-scripts/generate", body)
        .await
}

/// One Server-Sent Event: its name and its JSON data.
#[derive(Debug)]
struct Sse {
    event: String,
    data: Value,
}

/// Posts a generate request asking for events; returns the status, content type and events.
async fn generate_events(
    app: &TestApp,
    token: &str,
    body: Value,
    accept_header: bool,
) -> (StatusCode, String, Vec<Sse>) {
    let mut request = common::api()
        .post(app.url("/api/v1/live-scripts/generate"))
        .bearer_auth(token)
        .json(&body);
    if accept_header {
        request = request.header("accept", "text/event-stream");
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let events = text
        .split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            Some(Sse {
                event: event?,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            })
        })
        .collect();
    (status, content_type, events)
}

async fn llm_app(backend: Backend, base: String, key: &str) -> TestApp {
    let key = key.to_owned();
    spawn_app_with(
        backend,
        move |c| {
            c.llm_base_url = Some(base);
            c.llm_api_key = Some(key);
            c.llm_model = MODEL.into();
        },
        Arc::new(SystemClock),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Tests.

async fn template_writes_the_script_without_a_model(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, product) = open_shop(&app, "trainee01", PRODUCT).await;
    let (status, body) = generate(&app, &token, generate_body(product)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generator"], "template");
    assert_eq!(body["model"], Value::Null);
    assert!(
        body["note"].as_str().unwrap().contains("内置模板"),
        "{body}"
    );
    let script = &body["script"];
    assert!(script["opening"].as_str().unwrap().contains("宝妈"));
    assert!(script["closing"].as_str().unwrap().contains("下期预告"));
    let segments = script["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0]["product_id"], product);
    assert_eq!(segments[0]["product"], PRODUCT);
    let points = segments[0]["selling_points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{points:?}");
    assert_eq!(points[0], "无添加蔗糖");
    assert!(
        points[2].as_str().unwrap().contains("29.90 元"),
        "{points:?}"
    );
    assert!(segments[0]["interaction"].as_array().unwrap().len() >= 2);
    let cue = segments[0]["activity_cue"].as_str().unwrap();
    for tool in ["【秒杀】", "【红包】", "【优惠券】", "【福袋】"] {
        assert!(cue.contains(tool), "{tool} missing in {cue}");
    }

    // Streaming works too: a start event, then one done event.
    let mut body = generate_body(product);
    body["stream"] = json!(true);
    let (status, content_type, events) = generate_events(&app, &token, body, false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["start", "done"], "{events:?}");
    assert_eq!(events[0].data["generator"], "template");
    assert_eq!(events[1].data["generator"], "template");
    assert_eq!(
        events[1].data["script"]["segments"][0]["product_id"],
        product
    );
    // …and is chosen by the Accept header alone.
    let (_, content_type, events) =
        generate_events(&app, &token, generate_body(product), true).await;
    assert!(content_type.starts_with("text/event-stream"));
    assert_eq!(events.last().unwrap().event, "done");
}

async fn model_writes_the_script_through_an_openai_endpoint(backend: Backend) {
    let fake = FakeOpenAi::start(String::new()).await;
    let app = llm_app(backend, fake.base.clone(), KEY).await;
    let (token, product) = open_shop(&app, "trainee01", PRODUCT).await;
    fake.set(Behaviour::Answer, Some(model_answer(product)));

    let (status, body) = generate(&app, &token, generate_body(product)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generator"], "llm");
    assert_eq!(body["model"], MODEL);
    assert!(body["note"].as_str().unwrap().contains(MODEL));
    assert_eq!(body["script"]["title"], "蓝莓干宝妈专场");
    assert_eq!(body["script"]["segments"][0]["product_id"], product);
    assert_eq!(
        body["script"]["segments"][0]["selling_points"][0],
        "无添加蔗糖"
    );

    // What the endpoint was asked.
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let (auth, request) = &requests[0];
    assert_eq!(auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(request["model"], MODEL);
    assert_eq!(request["stream"], true);
    assert_eq!(request["messages"][0]["role"], "system");
    assert!(
        request["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
    assert_eq!(request["messages"][1]["role"], "user");
    let user = request["messages"][1]["content"].as_str().unwrap();
    for needle in [
        PRODUCT,
        "无添加蔗糖",
        "250g 39.90 元",
        "宝妈",
        "60 分钟",
        "秒杀价 29.90 元",
        "蓝莓真香",
    ] {
        assert!(
            user.contains(needle),
            "{needle} missing in the prompt:\n{user}"
        );
    }

    // Streamed into the page as it is written: deltas, then the parsed script.
    let mut body = generate_body(product);
    body["stream"] = json!(true);
    let (status, content_type, events) = generate_events(&app, &token, body, false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"));
    assert_eq!(events[0].event, "start");
    assert_eq!(events[0].data["generator"], "llm");
    assert_eq!(events[0].data["model"], MODEL);
    let deltas: Vec<&Sse> = events.iter().filter(|e| e.event == "delta").collect();
    assert!(deltas.len() > 3, "expected several deltas: {events:?}");
    let written: String = deltas
        .iter()
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(written, model_answer(product));
    let done = events.last().unwrap();
    assert_eq!(done.event, "done", "{events:?}");
    assert_eq!(done.data["generator"], "llm");
    assert_eq!(done.data["model"], MODEL);
    assert_eq!(
        done.data["script"]["closing"],
        "下期预告：周五晚八点不见不散，记得点关注！"
    );

    // The template is still there when asked for, and the model is not called.
    let mut body = generate_body(product);
    body["template"] = json!(true);
    let (status, body) = generate(&app, &token, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generator"], "template");
    assert!(
        body["note"].as_str().unwrap().contains("未使用 AI"),
        "{body}"
    );
    assert_eq!(fake.requests().len(), 2);
}

async fn model_failures_are_clear_errors(backend: Backend) {
    let fake = FakeOpenAi::start(String::new()).await;
    let app = llm_app(backend, fake.base.clone(), KEY).await;
    let (token, product) = open_shop(&app, "trainee01", PRODUCT).await;
    let streamed = || {
        let mut body = generate_body(product);
        body["stream"] = json!(true);
        body
    };

    // A server error (after the client's retries).
    fake.set(Behaviour::ServerError, None);
    let (status, body) = generate(&app, &token, generate_body(product)).await;
    assert_error(status, &body, 502, "llm_unavailable");
    assert!(
        body["message"].as_str().unwrap().contains("HTTP 500"),
        "{body}"
    );
    // …streamed: answered before any event, as the same error.
    let response = common::api()
        .post(app.url("/api/v1/live-scripts/generate"))
        .bearer_auth(&token)
        .json(&streamed())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "llm_unavailable");

    // Garbage instead of the protocol.
    fake.set(Behaviour::Garbage, None);
    let (status, body) = generate(&app, &token, generate_body(product)).await;
    assert_error(status, &body, 502, "llm_bad_output");
    let (status, _, events) = generate_events(&app, &token, streamed(), false).await;
    assert_eq!(status, StatusCode::OK);
    let last = events.last().unwrap();
    assert_eq!(last.event, "error", "{events:?}");
    assert_eq!(last.data["code"], "llm_bad_output");
    assert!(!last.data["message"].as_str().unwrap().is_empty());

    // The protocol is fine but the model wrote no script.
    fake.set(
        Behaviour::Answer,
        Some("抱歉，我暂时无法完成这个请求。".into()),
    );
    let (status, body) = generate(&app, &token, generate_body(product)).await;
    assert_error(status, &body, 502, "llm_bad_output");
    assert!(body["message"].as_str().unwrap().contains("JSON"), "{body}");
    let (_, _, events) = generate_events(&app, &token, streamed(), false).await;
    assert!(events.iter().any(|e| e.event == "delta"));
    let last = events.last().unwrap();
    assert_eq!(
        (last.event.as_str(), &last.data["code"]),
        ("error", &json!("llm_bad_output"))
    );

    // A wrong key: the endpoint answers 401.
    let wrong_key = llm_app(backend, fake.base.clone(), "sk-wrong").await;
    let (token, product) = open_shop(&wrong_key, "trainee01", PRODUCT).await;
    let (status, body) = generate(&wrong_key, &token, generate_body(product)).await;
    assert_error(status, &body, 502, "llm_auth_failed");

    // Nothing listens at the endpoint.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/v1")
    };
    let down = llm_app(backend, closed, KEY).await;
    let (token, product) = open_shop(&down, "trainee01", PRODUCT).await;
    let (status, body) = generate(&down, &token, generate_body(product)).await;
    assert_error(status, &body, 502, "llm_unavailable");
    assert!(
        body["message"].as_str().unwrap().contains("无法连接"),
        "{body}"
    );
}

async fn versions_are_kept_and_private(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, product) = open_shop(&app, "trainee01", PRODUCT).await;
    let (_, generated) = generate(&app, &token, generate_body(product)).await;
    let (status, saved) = app
        .send(
            Method::POST,
            &token,
            "/api/v1/live-scripts",
            json!({"script": generated["script"], "generator": generated["generator"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let id = saved["id"].as_i64().unwrap();
    assert_eq!(saved["latest_version"], 1);
    assert_eq!(saved["generator"], "template");
    assert_eq!(saved["mine"], true);
    assert_eq!(saved["title"], generated["script"]["title"]);
    assert_eq!(saved["script"], generated["script"]);

    // Two edits: versions 2 and 3.
    let mut script = generated["script"].clone();
    for (n, title) in [(2, "第二稿"), (3, "第三稿")] {
        script["segments"][0]["talk"] = json!(format!("{title}的讲解话术"));
        let (status, edited) = app
            .send(
                Method::PUT,
                &token,
                &format!("/api/v1/live-scripts/{id}"),
                json!({"title": title, "script": script, "base_version": n - 1}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{edited}");
        assert_eq!(edited["latest_version"], n);
        assert_eq!(edited["title"], title);
        assert_eq!(edited["script"]["title"], title);
    }
    let (status, detail) = app.get(&token, &format!("/api/v1/live-scripts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let versions: Vec<i64> = detail["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(detail["script"]["segments"][0]["talk"], "第三稿的讲解话术");
    for (n, title) in [
        (1, generated["script"]["title"].as_str().unwrap()),
        (2, "第二稿"),
        (3, "第三稿"),
    ] {
        let (status, version) = app
            .get(&token, &format!("/api/v1/live-scripts/{id}/versions/{n}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{version}");
        assert_eq!(version["version"], n);
        assert_eq!(version["script"]["title"], title);
    }
    assert_eq!(
        app.get(&token, &format!("/api/v1/live-scripts/{id}/versions/1"))
            .await
            .1["script"],
        generated["script"]
    );
    let (status, body) = app
        .get(&token, &format!("/api/v1/live-scripts/{id}/versions/4"))
        .await;
    assert_error(status, &body, 404, "not_found");

    // An edit from a stale version is refused and adds nothing.
    let (status, body) = app
        .send(
            Method::PUT,
            &token,
            &format!("/api/v1/live-scripts/{id}"),
            json!({"script": script, "base_version": 1}),
        )
        .await;
    assert_error(status, &body, 409, "conflict");
    // So is an incomplete script.
    let mut broken = script.clone();
    broken["segments"] = json!([]);
    let (status, body) = app
        .send(
            Method::PUT,
            &token,
            &format!("/api/v1/live-scripts/{id}"),
            json!({"script": broken}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(app.count("live_script_versions").await, 3);

    // Mine, newest first.
    let (status, second) = app
        .send(
            Method::POST,
            &token,
            "/api/v1/live-scripts",
            json!({"title": "手写脚本", "script": script, "generator": "manual"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let (_, list) = app.get(&token, "/api/v1/live-scripts").await;
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_i64().unwrap(), id]);
    assert_eq!(list[1]["latest_version"], 3);

    // Another trainee sees nothing of it.
    let other = app.token("trainee02").await;
    for path in [
        format!("/api/v1/live-scripts/{id}"),
        format!("/api/v1/live-scripts/{id}/versions/1"),
    ] {
        let (status, body) = app.get(&other, &path).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = app
        .send(
            Method::PUT,
            &other,
            &format!("/api/v1/live-scripts/{id}"),
            json!({"script": script}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(app.get(&other, "/api/v1/live-scripts").await.1, json!([]));
    // The class's instructor reads it, but does not edit it.
    let instructor = app.token("instructor01").await;
    let (status, body) = app
        .get(&instructor, &format!("/api/v1/live-scripts/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mine"], false);
    assert_eq!(body["owner"]["name"], detail["owner"]["name"]);
    let (status, body) = app
        .send(
            Method::PUT,
            &instructor,
            &format!("/api/v1/live-scripts/{id}"),
            json!({"script": script}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    assert_eq!(app.count("live_script_versions").await, 4);
}

async fn bad_input_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, product) = open_shop(&app, "trainee01", PRODUCT).await;
    let (_, someone_elses) = open_shop(&app, "trainee02", "东北黑木耳").await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = generate_body(product);
        change(&mut body);
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            with(&|b| b["product_ids"] = json!([])),
            400,
            "validation_failed",
        ),
        (
            with(&|b| b["product_ids"] = json!([product, product])),
            400,
            "validation_failed",
        ),
        (
            with(&|b| *b = json!({"product_ids": [someone_elses], "duration_minutes": 60})),
            404,
            "not_found",
        ),
        (
            with(&|b| b["product_ids"] = json!([product, someone_elses])),
            404,
            "not_found",
        ),
        (
            with(&|b| *b = json!({"product_ids": [987_654], "duration_minutes": 60})),
            404,
            "not_found",
        ),
        (
            with(&|b| b["duration_minutes"] = json!(5)),
            400,
            "validation_failed",
        ),
        (
            with(&|b| b["duration_minutes"] = json!(-5)),
            422,
            "unprocessable_entity",
        ),
        (
            with(&|b| b["activities"][0]["product_id"] = json!(someone_elses)),
            400,
            "validation_failed",
        ),
        (
            with(&|b| b["activities"][1]["count"] = json!(0)),
            400,
            "validation_failed",
        ),
        (
            with(&|b| b["activities"][2]["discount_cents"] = json!(9900)),
            400,
            "validation_failed",
        ),
        (
            with(&|b| b["activities"] = json!([{"kind": "raffle"}])),
            422,
            "unprocessable_entity",
        ),
        (
            with(&|b| b["surprise"] = json!(true)),
            422,
            "unprocessable_entity",
        ),
        (with(&|b| b["room_id"] = json!(987_654)), 404, "not_found"),
    ];
    for (body, status_code, code) in cases {
        let (status, answer) = generate(&app, &token, body.clone()).await;
        assert_eq!(status.as_u16(), status_code, "{body} → {answer}");
        assert_eq!(answer["code"], code, "{body} → {answer}");
    }
    // Saving needs a known generator and a complete script.
    let (_, generated) = generate(&app, &token, generate_body(product)).await;
    let (status, body) = app
        .send(
            Method::POST,
            &token,
            "/api/v1/live-scripts",
            json!({"script": generated["script"], "generator": "magic"}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = app
        .send(
            Method::POST,
            &token,
            "/api/v1/live-scripts",
            json!({"script": {"title": "", "opening": "x", "segments": [], "closing": "y"},
                   "generator": "manual"}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = app.get(&token, "/api/v1/live-scripts/987654").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app.get(&token, "/api/v1/live-scripts/abc").await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(app.count("live_scripts").await, 0);
}

backend_tests!(
    template_writes_the_script_without_a_model,
    model_writes_the_script_through_an_openai_endpoint,
    model_failures_are_clear_errors,
    versions_are_kept_and_private,
    bad_input_is_refused,
);
