//! Supervision and administration over HTTP: the organisation views every role home is built
//! from (classes, institutions, instructors, regions — always scoped by `foundation::org`), and
//! the platform administration of accounts, settings and the audit log.
//!
//! Later issues add institutions' class applications, trainee import, forms, statistics and data
//! exchange here.

mod accounts;
mod organisation;

use axum::Router;
use axum::routing::{get, post, put};
use foundation::AppState;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    paths(
        organisation::list_classes,
        organisation::get_class,
        organisation::list_institutions,
        organisation::get_institution,
        organisation::list_instructors,
        organisation::list_regions,
        accounts::list_accounts,
        accounts::create_account,
        accounts::set_roles,
        accounts::unlock,
        accounts::settings,
        accounts::audit_log,
        accounts::verify_audit,
    ),
    tags((name = "organisation", description = "Regions, institutions, instructors and classes in the caller's scope"),
         (name = "admin", description = "Platform administration"))
)]
pub struct AdminApi;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/classes", get(organisation::list_classes))
        .route("/api/v1/classes/{id}", get(organisation::get_class))
        .route("/api/v1/institutions", get(organisation::list_institutions))
        .route(
            "/api/v1/institutions/{id}",
            get(organisation::get_institution),
        )
        .route("/api/v1/instructors", get(organisation::list_instructors))
        .route("/api/v1/regions", get(organisation::list_regions))
        .route(
            "/api/v1/admin/accounts",
            get(accounts::list_accounts).post(accounts::create_account),
        )
        .route(
            "/api/v1/admin/accounts/{id}/roles",
            put(accounts::set_roles),
        )
        .route("/api/v1/admin/accounts/{id}/unlock", post(accounts::unlock))
        .route("/api/v1/admin/settings", get(accounts::settings))
        .route("/api/v1/admin/audit", get(accounts::audit_log))
        .route("/api/v1/admin/audit/verify", post(accounts::verify_audit))
}
