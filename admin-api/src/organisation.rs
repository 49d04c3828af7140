//! Read-only organisation views, scoped to the caller.

use axum::Json;
use axum::extract::State;
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiPath, CurrentUser};
use foundation::identity::Role;
use foundation::org::{
    ClassDetail, ClassSummary, InstitutionDetail, InstitutionSummary, Instructor, RegionSummary,
    Scope,
};
use foundation::{ApiError, ApiResult, AppState};

/// Classes the caller may see.
#[utoipa::path(get, path = "/api/v1/classes", tag = "organisation",
    responses((status = 200, body = [ClassSummary]), (status = 401, body = ErrorBody)))]
pub async fn list_classes(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<ClassSummary>>> {
    Ok(Json(state.org.classes(&Scope::of(&p)).await?))
}

/// One class with instructors and trainees; 404 outside the caller's scope.
#[utoipa::path(get, path = "/api/v1/classes/{id}", tag = "organisation",
    params(("id" = i64, Path, description = "class id")),
    responses((status = 200, body = ClassDetail), (status = 404, body = ErrorBody)))]
pub async fn get_class(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ClassDetail>> {
    Ok(Json(state.org.class_detail(&p, id).await?))
}

fn require_staff(p: &foundation::identity::Principal) -> ApiResult<()> {
    if p.has(Role::PlatformAdmin) || p.has(Role::Supervisor) || p.has(Role::InstitutionAdmin) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// Institutions in scope (institution admin: their own; supervisor: the region's; platform admin: all).
#[utoipa::path(get, path = "/api/v1/institutions", tag = "organisation",
    responses((status = 200, body = [InstitutionSummary]), (status = 403, body = ErrorBody)))]
pub async fn list_institutions(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<InstitutionSummary>>> {
    require_staff(&p)?;
    Ok(Json(state.org.institutions(&Scope::of(&p)).await?))
}

/// One institution with its instructors and classes.
#[utoipa::path(get, path = "/api/v1/institutions/{id}", tag = "organisation",
    params(("id" = i64, Path, description = "institution id")),
    responses((status = 200, body = InstitutionDetail), (status = 404, body = ErrorBody)))]
pub async fn get_institution(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<InstitutionDetail>> {
    require_staff(&p)?;
    Ok(Json(state.org.institution_detail(&p, id).await?))
}

/// Instructors in scope (a trainee: the instructors of their classes).
#[utoipa::path(get, path = "/api/v1/instructors", tag = "organisation",
    responses((status = 200, body = [Instructor])))]
pub async fn list_instructors(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<Instructor>>> {
    Ok(Json(state.org.instructors(&Scope::of(&p)).await?))
}

/// Regions in scope (supervisor: their own; platform admin: all).
#[utoipa::path(get, path = "/api/v1/regions", tag = "organisation",
    responses((status = 200, body = [RegionSummary]), (status = 403, body = ErrorBody)))]
pub async fn list_regions(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<RegionSummary>>> {
    if !(p.has(Role::PlatformAdmin) || p.has(Role::Supervisor)) {
        return Err(ApiError::forbidden());
    }
    Ok(Json(state.org.regions(&Scope::of(&p)).await?))
}
