//! Bad input gets a clear 4xx JSON error and nothing is written: SQL and script in text fields,
//! invalid ID numbers, oversize bodies, truncated JSON, wrong types, unknown fields, forged
//! tokens and other institutions' ids.

mod common;

use common::{Backend, DEMO_PASSWORD, api, assert_error, spawn_app};
use foundation::identity::fields::IdNumber;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn valid_id(seq: u32) -> String {
    let body = format!("22010219950101{:03}", seq % 1000);
    format!("{body}{}", IdNumber::check_code(&body))
}

async fn hostile_text_fields_are_refused_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("admin").await;
    let accounts_before = app.count("accounts").await;
    let audit_before = app.count("audit_log").await;
    let base = json!({
        "username": "newtrainee", "name": "新学员", "password": "abc12345", "role": "trainee",
        "institution_id": 1, "phone": "13900001111", "id_number": valid_id(1)
    });
    let cases = [
        (
            "username",
            json!("x'; DROP TABLE accounts;--"),
            "validation_failed",
        ),
        (
            "username",
            json!("<script>alert(1)</script>"),
            "validation_failed",
        ),
        (
            "name",
            json!("<img src=x onerror=alert(1)>"),
            "validation_failed",
        ),
        (
            "name",
            json!("Robert'); DROP TABLE accounts;--"),
            "validation_failed",
        ),
        (
            "id_number",
            json!("110105194912310021"),
            "invalid_id_number",
        ),
        ("id_number", json!("' OR '1'='1"), "invalid_id_number"),
        ("phone", json!("<script>"), "invalid_phone"),
        ("password", json!("short"), "weak_password"),
        ("role", json!("god"), "validation_failed"),
        ("certificate_no", json!("<b>x</b>"), "validation_failed"),
    ];
    for (field, value, code) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, answer) = app
            .send(Method::POST, &admin, "/api/v1/admin/accounts", body)
            .await;
        assert_error(status, &answer, 400, code);
        assert!(
            !answer.to_string().contains("sqlx"),
            "leaks internals: {answer}"
        );
    }
    // Wrong types and unknown fields.
    let mut body = base.clone();
    body["institution_id"] = json!("one");
    let (status, answer) = app
        .send(Method::POST, &admin, "/api/v1/admin/accounts", body)
        .await;
    assert_error(status, &answer, 422, "unprocessable_entity");
    let mut body = base.clone();
    body["is_admin"] = json!(true);
    let (status, answer) = app
        .send(Method::POST, &admin, "/api/v1/admin/accounts", body)
        .await;
    assert_error(status, &answer, 422, "unprocessable_entity");
    assert!(answer["message"].as_str().unwrap().contains("is_admin"));
    assert_eq!(app.count("accounts").await, accounts_before);
    assert_eq!(
        app.count("audit_log").await,
        audit_before,
        "refused requests write no audit entry"
    );

    // Hostile search text is just text.
    let (status, page) = app
        .get(&admin, "/api/v1/admin/accounts?q=%27%20OR%20%271%27%3D%271")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 0);
    let (status, page) = app.get(&admin, "/api/v1/admin/accounts?q=%25").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 0, "% is matched literally");

    // The valid request goes through, once.
    let (status, created) = app
        .send(Method::POST, &admin, "/api/v1/admin/accounts", base.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["id_number_masked"].as_str().unwrap().len(), 18);
    let (status, answer) = app
        .send(Method::POST, &admin, "/api/v1/admin/accounts", base.clone())
        .await;
    assert_error(status, &answer, 409, "username_taken");
    let mut same_id = base.clone();
    same_id["username"] = json!("another");
    let (status, answer) = app
        .send(Method::POST, &admin, "/api/v1/admin/accounts", same_id)
        .await;
    assert_error(status, &answer, 409, "id_number_taken");
    assert_eq!(app.count("accounts").await, accounts_before + 1);
}

async fn malformed_and_oversize_bodies(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/api/v1/auth/login");
    let send_raw = |body: Vec<u8>, content_type: &'static str| {
        let url = url.clone();
        async move {
            let response = api()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let (status, body) = send_raw(
        br#"{"username": "trainee01", "passw"#.to_vec(),
        "application/json",
    )
    .await;
    assert_error(status, &body, 400, "malformed_json");
    let (status, body) = send_raw(
        b"username=trainee01".to_vec(),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let (status, body) = send_raw(
        br#"{"username": 5, "password": []}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_error(status, &body, 422, "unprocessable_entity");
    let (status, body) =
        send_raw(br#"{"username": "trainee01"}"#.to_vec(), "application/json").await;
    assert_error(status, &body, 422, "unprocessable_entity");
    // A 10 MB body: the server refuses it from the Content-Length, before reading it, and may
    // close the connection while a client is still writing; so this one is sent by hand.
    let mut answered = false;
    for _ in 0..5 {
        if let Some((status, body)) = oversize_request(&app.base, 10 * 1024 * 1024).await {
            assert_error(status, &body, 413, "payload_too_large");
            answered = true;
            break;
        }
    }
    assert!(answered, "the 413 answer was never read in five tries");
    // None of that logged anybody in or locked anything.
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(
        app.login(&api(), "trainee01", DEMO_PASSWORD).await.0,
        StatusCode::OK
    );
}

/// POSTs a login body of `len` bytes. The server answers 413 as soon as the body passes the
/// limit and stops reading, so a client still writing may see its write fail instead of the
/// answer; that outcome is returned as `None`.
async fn oversize_request(base: &str, len: usize) -> Option<(StatusCode, serde_json::Value)> {
    let mut body = br#"{"username": "trainee01", "password": ""#.to_vec();
    body.extend(std::iter::repeat_n(b'a', len));
    body.extend(br#""}"#);
    let response = api()
        .post(format!("{base}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => {
            let status = r.status();
            Some((status, r.json().await.unwrap_or_default()))
        }
        Err(e) => {
            assert!(e.is_request(), "unexpected failure: {e}");
            None
        }
    }
}

async fn unknown_paths_methods_and_bad_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token("trainee01").await;
    let (status, body) = app.get(&token, "/api/v1/no-such-thing").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app.get(&token, "/api/v1/classes/abc").await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = app.get(&token, "/api/v1/classes/999999").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .send(Method::DELETE, &token, "/api/v1/me", json!({}))
        .await;
    assert_error(status, &body, 405, "method_not_allowed");
    let (status, body) = app.get(&token, "/api/v1/admin/accounts?page=x").await;
    assert_error(status, &body, 400, "bad_request");
}

async fn other_institutions_ids_are_not_found_and_nothing_is_written(backend: Backend) {
    use sqlx::Row;
    let app = spawn_app(backend).await;
    // A second institution in the same region, with a class.
    let pool = app.state.db.pool();
    let other: i64 = sqlx::query("INSERT INTO institutions (region_id, name, created_at) VALUES (1, '吉林市另一所培训学校', 0) RETURNING id")
        .fetch_one(pool).await.unwrap().try_get(0).unwrap();
    let other_class: i64 = sqlx::query("INSERT INTO classes (institution_id, code, name, edition, status, start_date, end_date, created_at) VALUES ($1, 'OTHER-01', '另一个班', 'ecommerce', 'planned', '2026-12-01', '2026-12-20', 0) RETURNING id")
        .bind(other).fetch_one(pool).await.unwrap().try_get(0).unwrap();

    let inst_admin = app.token("institution01").await;
    let (status, body) = app
        .get(&inst_admin, &format!("/api/v1/institutions/{other}"))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .get(&inst_admin, &format!("/api/v1/classes/{other_class}"))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (_, list) = app.get(&inst_admin, "/api/v1/institutions").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Creating an account in another institution: not found, nothing written.
    let before = app.count("accounts").await;
    let (status, body) = app
        .send(Method::POST, &inst_admin, "/api/v1/admin/accounts", json!({
            "username": "sneaky", "name": "越权", "password": "abc12345", "role": "trainee", "institution_id": other
        }))
        .await;
    assert_error(status, &body, 404, "not_found");
    // Nor may an institution admin create a platform admin.
    let (status, body) = app
        .send(Method::POST, &inst_admin, "/api/v1/admin/accounts", json!({
            "username": "sneaky2", "name": "越权", "password": "abc12345", "role": "platform_admin"
        }))
        .await;
    assert_error(status, &body, 403, "forbidden");
    assert_eq!(app.count("accounts").await, before);

    // A trainee is refused admin endpoints; their class list is only their own class.
    let trainee = app.token("trainee01").await;
    let (status, body) = app.get(&trainee, "/api/v1/admin/accounts").await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app
        .send(
            Method::PUT,
            &trainee,
            "/api/v1/admin/accounts/1/roles",
            json!({"roles": ["platform_admin"]}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (_, classes) = app.get(&trainee, "/api/v1/classes").await;
    assert_eq!(classes.as_array().unwrap().len(), 1);
}

backend_tests!(
    hostile_text_fields_are_refused_and_nothing_is_written,
    malformed_and_oversize_bodies,
    unknown_paths_methods_and_bad_ids,
    other_institutions_ids_are_not_found_and_nothing_is_written,
);
