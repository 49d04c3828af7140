//! Every role sees its own slice of the organisation, with real data: the role homes' APIs.

mod common;

use common::{Backend, spawn_app};
use reqwest::StatusCode;

async fn each_role_sees_its_scope(backend: Backend) {
    use sqlx::Row;
    let app = spawn_app(backend).await;
    // A second region with an institution, which nobody in 长春市 may see.
    let pool = app.state.db.pool();
    let region: i64 = sqlx::query(
        "INSERT INTO regions (code, name, created_at) VALUES ('220200', '吉林市', 0) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    sqlx::query("INSERT INTO institutions (region_id, name, created_at) VALUES ($1, '吉林市创业培训中心', 0)")
        .bind(region).execute(pool).await.unwrap();

    // Trainee: my class, my instructors.
    let t = app.token("trainee01").await;
    let (_, classes) = app.get(&t, "/api/v1/classes").await;
    assert_eq!(classes.as_array().unwrap().len(), 1);
    assert_eq!(classes[0]["trainee_count"], 30);
    assert_eq!(classes[0]["instructors"].as_array().unwrap().len(), 2);
    let (_, instructors) = app.get(&t, "/api/v1/instructors").await;
    let names: Vec<&str> = instructors
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let class_id = classes[0]["id"].as_i64().unwrap();
    let (status, detail) = app.get(&t, &format!("/api/v1/classes/{class_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["trainees"].as_array().unwrap().len(), 30);
    assert!(
        detail["trainees"][1]["phone_masked"].is_null(),
        "classmates' phones are hidden from trainees"
    );
    assert_eq!(
        app.get(&t, "/api/v1/institutions").await.0,
        StatusCode::FORBIDDEN
    );

    // Instructor: my classes and trainees (with masked phones).
    let i = app.token("instructor01").await;
    let (_, classes) = app.get(&i, "/api/v1/classes").await;
    assert_eq!(classes.as_array().unwrap().len(), 1);
    let (_, detail) = app.get(&i, &format!("/api/v1/classes/{class_id}")).await;
    assert_eq!(detail["trainees"][0]["phone_masked"], "138****0001");

    // Institution admin: our instructors and classes.
    let a = app.token("institution01").await;
    let (_, institutions) = app.get(&a, "/api/v1/institutions").await;
    assert_eq!(institutions.as_array().unwrap().len(), 1);
    assert_eq!(institutions[0]["instructor_count"], 2);
    assert_eq!(institutions[0]["trainee_count"], 30);
    let id = institutions[0]["id"].as_i64().unwrap();
    let (_, detail) = app.get(&a, &format!("/api/v1/institutions/{id}")).await;
    assert_eq!(detail["instructors"].as_array().unwrap().len(), 2);
    assert_eq!(detail["classes"].as_array().unwrap().len(), 1);
    let (_, accounts) = app.get(&a, "/api/v1/admin/accounts?per_page=100").await;
    assert_eq!(
        accounts["total"], 33,
        "30 trainees, 2 instructors and the admin"
    );

    // Supervisor: the region's institutions only.
    let s = app.token("supervisor01").await;
    let (_, institutions) = app.get(&s, "/api/v1/institutions").await;
    let names: Vec<&str> = institutions
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["长春市示范职业培训学校"]);
    let (_, regions) = app.get(&s, "/api/v1/regions").await;
    assert_eq!(regions.as_array().unwrap().len(), 1);
    assert_eq!(regions[0]["name"], "长春市");
    assert_eq!(
        app.get(&s, "/api/v1/classes")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Platform admin: everything, and the settings without secrets.
    let p = app.token("admin").await;
    assert_eq!(
        app.get(&p, "/api/v1/institutions")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.get(&p, "/api/v1/regions")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, page) = app
        .get(&p, "/api/v1/admin/accounts?per_page=10&page=2")
        .await;
    assert_eq!(page["total"], 35);
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    // Encrypted fields are found by their keyed hash: a full phone or ID number finds the account.
    let (_, found) = app.get(&p, "/api/v1/admin/accounts?q=138-4310-0001").await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["username"], "trainee01");
    let id_number = {
        use sqlx::Row;
        let enc: String =
            sqlx::query("SELECT id_number_enc FROM accounts WHERE username = 'trainee02'")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
        app.state.identity.keys().fields.decrypt(&enc).unwrap()
    };
    let (_, found) = app
        .get(&p, &format!("/api/v1/admin/accounts?q={id_number}"))
        .await;
    assert_eq!(found["items"][0]["username"], "trainee02");
    let (_, found) = app.get(&p, "/api/v1/admin/accounts?q=0001").await;
    assert_eq!(
        found["total"], 0,
        "partial phone numbers are not searchable"
    );
    let (status, settings) = app.get(&p, "/api/v1/admin/settings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["field_keys"], "***");
    assert_eq!(settings["demo_password"], "***");
    assert!(!settings.to_string().contains(common::DEMO_PASSWORD));
    assert_eq!(
        app.get(&s, "/api/v1/admin/settings").await.0,
        StatusCode::FORBIDDEN
    );
}

async fn role_changes_are_audited_and_take_effect(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = app.token("admin").await;
    let (_, page) = app.get(&p, "/api/v1/admin/accounts?q=instructor02").await;
    let id = page["items"][0]["id"].as_i64().unwrap();
    let (status, row) = app
        .send(
            reqwest::Method::PUT,
            &p,
            &format!("/api/v1/admin/accounts/{id}/roles"),
            serde_json::json!({"roles": ["instructor", "institution_admin"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{row}");
    assert_eq!(
        row["roles"],
        serde_json::json!(["instructor", "institution_admin"])
    );
    let (_, audit) = app.get(&p, "/api/v1/admin/audit?limit=5").await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "roles_changed")
        .expect("audited");
    assert_eq!(entry["detail"]["before"], serde_json::json!(["instructor"]));
    assert_eq!(entry["actor"]["name"], "系统管理员");
    // A supervisor role without a region is refused.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &p,
            &format!("/api/v1/admin/accounts/{id}/roles"),
            serde_json::json!({"roles": ["supervisor"]}),
        )
        .await;
    common::assert_error(status, &body, 400, "validation_failed");
    // An admin cannot demote themselves.
    let (_, me) = app.get(&p, "/api/v1/me").await;
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &p,
            &format!("/api/v1/admin/accounts/{}/roles", me["id"]),
            serde_json::json!({"roles": ["trainee"]}),
        )
        .await;
    common::assert_error(status, &body, 409, "conflict");
}

backend_tests!(
    each_role_sees_its_scope,
    role_changes_are_audited_and_take_effect
);
