//! Operational endpoints: health, readiness, metrics, the OpenAPI document, the web app shell.

mod common;

use common::{Backend, api, spawn_app};
use reqwest::StatusCode;

async fn health_readiness_metrics_openapi(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = api().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready: serde_json::Value = api()
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["database"]["ok"], true);

    app.token("trainee01").await;
    let metrics = api()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("/api/v1/auth/login"));

    let doc: serde_json::Value = api()
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/classes",
        "/api/v1/admin/accounts",
        "/api/v1/admin/audit/verify",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let response = api()
        .get(app.url("/api/v1/me"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

async fn app_routes_get_the_shell_and_missing_files_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let page = api().get(app.url("/trainee")).send().await.unwrap();
    // 200 with the built app, 503 with instructions when the web app has not been built.
    assert!(matches!(page.status().as_u16(), 200 | 503));
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let missing = api().get(app.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

backend_tests!(
    health_readiness_metrics_openapi,
    app_routes_get_the_shell_and_missing_files_404
);
