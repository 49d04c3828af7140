//! Identity over HTTP: the login contract, bearer and cookie sessions with CSRF, one active
//! session per account, lockout, logout, password change, masked fields.

mod common;

use std::sync::Arc;

use common::{
    Backend, DEMO_PASSWORD, TestApp, api, assert_error, browser, spawn_app, spawn_app_with,
};
use foundation::clock::ManualClock;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn login_contract(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = browser();
    let (status, body) = app.login(&client, "trainee01", DEMO_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].as_str().is_some_and(|t| t.len() >= 32));
    assert!(body["user"]["id"].as_i64().is_some());
    assert_eq!(body["user"]["name"], "张伟");
    assert_eq!(body["user"]["roles"], json!(["trainee"]));

    // The cookie session works on its own, for a browser.
    let me = client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["username"], "trainee01");
    let masked_id = me["id_number_masked"].as_str().unwrap();
    assert_eq!(masked_id.len(), 18);
    assert!(masked_id.starts_with("2201**********"), "{masked_id}");
    assert_eq!(me["phone_masked"], "138****0001");
    assert_eq!(me["institution"]["name"], "长春市示范职业培训学校");

    // Wrong password and unknown user: the same 401.
    let (status, body) = app.login(&api(), "trainee01", "wrong-password1").await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body) = app.login(&api(), "nobody", "wrong-password1").await;
    assert_error(status, &body, 401, "invalid_credentials");
}

async fn bearer_token_works_and_forged_tokens_do_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token("instructor01").await;
    let (status, me) = app.get(&token, "/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["roles"], json!(["instructor"]));
    assert_eq!(me["instructor_certificate_no"], "MLH-WLCY-2024-0107");

    let forged = "A".repeat(43);
    let (status, body) = app.get(&forged, "/api/v1/me").await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = app.get("short", "/api/v1/me").await;
    assert_error(status, &body, 401, "unauthenticated");
    let response = api()
        .get(app.url("/api/v1/me"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = api().get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn a_new_login_ends_the_old_session_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ended = app
        .state
        .bus
        .subscribe(foundation::identity::SESSION_ENDED_TOPIC)
        .await;
    let first = app.token("trainee02").await;
    assert_eq!(app.get(&first, "/api/v1/me").await.0, StatusCode::OK);
    let second = app.token("trainee02").await;
    let (status, body) = app.get(&first, "/api/v1/me").await;
    assert_error(status, &body, 401, "session_ended");
    assert!(body["message"].as_str().unwrap().contains("其他地方登录"));
    assert_eq!(app.get(&second, "/api/v1/me").await.0, StatusCode::OK);
    assert_eq!(app.count("sessions").await, 1);
    // Live connections are told through the bus.
    let message = tokio::time::timeout(std::time::Duration::from_secs(2), ended.recv())
        .await
        .expect("session end announced")
        .unwrap()
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&message).unwrap();
    assert_eq!(event["reason"], "replaced");
}

async fn cookie_sessions_need_the_csrf_token_on_unsafe_methods(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = browser();
    let (_, body) = app.login(&client, "trainee03", DEMO_PASSWORD).await;
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let change = json!({"old_password": DEMO_PASSWORD, "new_password": "newpass123"});

    let response = client
        .put(app.url("/api/v1/me/password"))
        .json(&change)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_error(status, &body, 403, "csrf_failed");

    let response = client
        .put(app.url("/api/v1/me/password"))
        .header("x-csrf-token", "wrong")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = client
        .put(app.url("/api/v1/me/password"))
        .header("x-csrf-token", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // The new password works, the old one no longer does.
    assert_eq!(
        app.login(&api(), "trainee03", "newpass123").await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.login(&api(), "trainee03", DEMO_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
}

async fn password_change_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token("trainee04").await;
    let (status, body) = app
        .send(
            Method::PUT,
            &token,
            "/api/v1/me/password",
            json!({"old_password": "nope12345", "new_password": "newpass123"}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body) = app
        .send(
            Method::PUT,
            &token,
            "/api/v1/me/password",
            json!({"old_password": DEMO_PASSWORD, "new_password": "short1"}),
        )
        .await;
    assert_error(status, &body, 400, "weak_password");
    let (status, body) = app
        .send(
            Method::PUT,
            &token,
            "/api/v1/me/password",
            json!({"old_password": DEMO_PASSWORD, "new_password": "onlyletters"}),
        )
        .await;
    assert_error(status, &body, 400, "weak_password");
    // The session survives its own password change.
    let (status, _) = app
        .send(
            Method::PUT,
            &token,
            "/api/v1/me/password",
            json!({"old_password": DEMO_PASSWORD, "new_password": "better2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&token, "/api/v1/me").await.0, StatusCode::OK);
}

async fn logout_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = browser();
    let (_, body) = app.login(&client, "trainee05", DEMO_PASSWORD).await;
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let token = body["token"].as_str().unwrap().to_owned();
    let response = client
        .post(app.url("/api/v1/auth/logout"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = app.get(&token, "/api/v1/me").await;
    assert_error(status, &body, 401, "session_ended");
    let response = client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn repeated_failures_lock_the_account_until_the_lockout_passes(backend: Backend) {
    let clock = ManualClock::new(1_790_000_000_000);
    let app: TestApp = spawn_app_with(backend, |c| c.max_failed_logins = 3, clock.clone()).await;
    for _ in 0..2 {
        let (status, body) = app.login(&api(), "trainee06", "wrong-pass1").await;
        assert_error(status, &body, 401, "invalid_credentials");
    }
    let (status, body) = app.login(&api(), "trainee06", "wrong-pass1").await;
    assert_error(status, &body, 423, "account_locked");
    // Even the right password is refused while locked.
    let (status, body) = app.login(&api(), "trainee06", DEMO_PASSWORD).await;
    assert_error(status, &body, 423, "account_locked");
    assert!(
        body["message"].as_str().unwrap().contains("15 分钟"),
        "{body}"
    );
    clock.advance_millis(15 * 60_000 + 1);
    assert_eq!(
        app.login(&api(), "trainee06", DEMO_PASSWORD).await.0,
        StatusCode::OK
    );

    // The audit log recorded the failures, the lock and the login.
    let entries = app.state.audit.recent(20).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"account_locked"), "{actions:?}");
    assert!(actions.contains(&"login_refused_locked"), "{actions:?}");
    assert!(actions.iter().filter(|a| **a == "login_failed").count() >= 3);
    assert!(app.state.audit.verify().await.unwrap().ok);
}

async fn admins_unlock_accounts(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| c.max_failed_logins = 2,
        Arc::new(foundation::clock::SystemClock),
    )
    .await;
    for _ in 0..2 {
        app.login(&api(), "trainee07", "wrong-pass1").await;
    }
    assert_eq!(
        app.login(&api(), "trainee07", DEMO_PASSWORD)
            .await
            .0
            .as_u16(),
        423
    );
    let admin = app.token("admin").await;
    let (_, page) = app.get(&admin, "/api/v1/admin/accounts?q=trainee07").await;
    let id = page["items"][0]["id"].as_i64().unwrap();
    assert!(page["items"][0]["locked_until"].is_string());
    let (status, _) = app
        .send(
            Method::POST,
            &admin,
            &format!("/api/v1/admin/accounts/{id}/unlock"),
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.login(&api(), "trainee07", DEMO_PASSWORD).await.0,
        StatusCode::OK
    );
}

async fn idle_sessions_expire(backend: Backend) {
    let clock = ManualClock::new(1_790_000_000_000);
    let app = spawn_app_with(backend, |c| c.session_idle_minutes = 30, clock.clone()).await;
    let token = app.token("trainee08").await;
    clock.advance_millis(29 * 60_000);
    assert_eq!(app.get(&token, "/api/v1/me").await.0, StatusCode::OK);
    clock.advance_millis(31 * 60_000);
    let (status, body) = app.get(&token, "/api/v1/me").await;
    assert_error(status, &body, 401, "session_ended");
    assert!(body["message"].as_str().unwrap().contains("过期"));
}

async fn sensitive_fields_are_encrypted_at_rest(backend: Backend) {
    use sqlx::Row;
    let app = spawn_app(backend).await;
    let row = sqlx::query("SELECT phone_enc, id_number_enc, id_number_hash, id_number_masked FROM accounts WHERE username = 'trainee01'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let phone_enc: String = row.try_get(0).unwrap();
    let id_enc: String = row.try_get(1).unwrap();
    let id_hash: String = row.try_get(2).unwrap();
    let masked: String = row.try_get(3).unwrap();
    assert!(phone_enc.starts_with("v1.k1.") && !phone_enc.contains("13843100001"));
    let keys = app.state.identity.keys();
    let id_number = keys.fields.decrypt(&id_enc).unwrap();
    assert_eq!(id_number.len(), 18);
    assert!(!id_enc.contains(&id_number));
    assert_eq!(keys.lookup.hash("id_number", &id_number), id_hash);
    assert_eq!(
        masked,
        format!("{}**********{}", &id_number[..4], &id_number[14..])
    );
    assert_eq!(keys.fields.decrypt(&phone_enc).unwrap(), "13843100001");
}

async fn key_rotation_reencrypts_every_field(backend: Backend) {
    use foundation::crypto::Keys;
    use sqlx::Row;
    let app = spawn_app(backend).await;
    let config = &app.state.config;
    let new_primary = Keys::generate().0.replace("k1:", "k2:");
    let rotated = Keys::from_config(
        &format!("{new_primary},{}", config.field_keys),
        &config.lookup_key,
    )
    .unwrap();
    let before: Vec<String> = sqlx::query("SELECT id_number_enc FROM accounts ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            app.state
                .identity
                .keys()
                .fields
                .decrypt(&r.try_get::<String, _>(0).unwrap())
                .unwrap()
        })
        .collect();
    let report =
        foundation::identity::rekey::reencrypt_all(&app.state.db, &rotated, &app.state.audit)
            .await
            .unwrap();
    assert_eq!(
        report.rewritten,
        35 * 2 + 1,
        "every phone and ID number, and the institution's phone"
    );
    // Only the new key is needed now.
    let only_new = Keys::from_config(&new_primary, &config.lookup_key).unwrap();
    let after: Vec<String> = sqlx::query("SELECT id_number_enc FROM accounts ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            only_new
                .fields
                .decrypt(&r.try_get::<String, _>(0).unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(before, after);
    let again =
        foundation::identity::rekey::reencrypt_all(&app.state.db, &rotated, &app.state.audit)
            .await
            .unwrap();
    assert_eq!(again.rewritten, 0);
}

backend_tests!(
    key_rotation_reencrypts_every_field,
    login_contract,
    bearer_token_works_and_forged_tokens_do_not,
    a_new_login_ends_the_old_session_everywhere,
    cookie_sessions_need_the_csrf_token_on_unsafe_methods,
    password_change_rules,
    logout_ends_the_session,
    repeated_failures_lock_the_account_until_the_lockout_passes,
    admins_unlock_accounts,
    idle_sessions_expire,
    sensitive_fields_are_encrypted_at_rest,
);
