//! The audit log is append-only and hash-chained; verification names the first broken link,
//! both through the API and the `livecamp audit verify` command.

mod common;

use common::{Backend, spawn_app};

async fn tampering_is_found_at_the_first_broken_link(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app.token("admin").await;
    for user in ["trainee01", "trainee02", "instructor01"] {
        app.token(user).await;
    }
    let (_, report) = app
        .send(
            reqwest::Method::POST,
            &p,
            "/api/v1/admin/audit/verify",
            serde_json::json!(null),
        )
        .await;
    assert_eq!(report["ok"], true, "{report}");
    let total = report["checked"].as_i64().unwrap();
    assert!(total >= 40, "{report}");

    // The database refuses updates and deletes outright.
    let pool = app.state.db.pool();
    assert!(
        sqlx::query("UPDATE audit_log SET action = 'x' WHERE seq = 3")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(pool)
            .await
            .is_err()
    );

    // Someone with raw database access drops the guard and edits entry 5.
    match app.backend {
        Backend::Sqlite => {
            sqlx::query("DROP TRIGGER audit_log_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DROP TRIGGER audit_log_no_delete")
                .execute(pool)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            sqlx::query("DROP TRIGGER audit_log_no_update_delete ON audit_log")
                .execute(pool)
                .await
                .unwrap();
        }
    }
    use sqlx::Row;
    let original: String = sqlx::query("SELECT target FROM audit_log WHERE seq = 5")
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    sqlx::query("UPDATE audit_log SET target = 'account:999' WHERE seq = 5")
        .execute(pool)
        .await
        .unwrap();
    let report = app.state.audit.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.first_broken_seq, Some(5));
    assert_eq!(report.checked, 4);

    // Put entry 5 back and delete entry 9 instead: the gap is named.
    sqlx::query("UPDATE audit_log SET target = $1 WHERE seq = 5")
        .bind(&original)
        .execute(pool)
        .await
        .unwrap();
    assert!(app.state.audit.verify().await.unwrap().ok);
    sqlx::query("DELETE FROM audit_log WHERE seq = 9")
        .execute(pool)
        .await
        .unwrap();
    let report = app.state.audit.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.first_broken_seq, Some(9));
    assert!(report.reason.unwrap().contains("missing"));
}

async fn the_cli_verifies_the_chain(backend: Backend) {
    if backend == Backend::Postgres {
        // The command reads the same code path; one backend is enough for the process test.
        return;
    }
    let app = spawn_app(backend).await;
    app.token("trainee01").await;
    let config = &app.state.config;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_livecamp"))
            .args(["audit", "verify"])
            .env("LIVECAMP_DATA_DIR", &config.data_dir)
            .env("LIVECAMP_DATABASE_URL", config.database_url())
            .env("LIVECAMP_FIELD_KEYS", &config.field_keys)
            .env("LIVECAMP_LOOKUP_KEY", &config.lookup_key)
            .output()
            .expect("run livecamp")
    };
    let ok = run();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"ok\": true"));
    let pool = app.state.db.pool();
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET detail = '{}' WHERE seq = 2")
        .execute(pool)
        .await
        .unwrap();
    let broken = run();
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).contains("\"first_broken_seq\": 2"));
}

backend_tests!(
    tampering_is_found_at_the_first_broken_link,
    the_cli_verifies_the_chain
);
