//! Script documents and their versions in the database. A document's versions are numbered from
//! 1 and never change; an edit adds the next number inside one write transaction (the document
//! row's update serialises concurrent editors, the primary key catches the rest).

use foundation::org::Ref;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use sqlx::Row;

use super::rules::LiveScript;
use crate::util;

/// A document as stored.
#[derive(Debug, Clone)]
pub struct ScriptRow {
    pub id: i64,
    pub owner: Ref,
    pub room_id: Option<i64>,
    pub title: String,
    pub generator: String,
    pub model: Option<String>,
    pub latest_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "SELECT s.id, s.owner_id, a.name, s.room_id, s.title, s.generator, s.model, \
     (SELECT MAX(v.version) FROM live_script_versions v WHERE v.script_id = s.id), \
     s.created_at, s.updated_at FROM live_scripts s JOIN accounts a ON a.id = s.owner_id";

fn from_row(row: &sqlx::any::AnyRow) -> Result<ScriptRow, sqlx::Error> {
    Ok(ScriptRow {
        id: row.try_get(0)?,
        owner: Ref {
            id: row.try_get(1)?,
            name: row.try_get(2)?,
        },
        room_id: row.try_get(3)?,
        title: row.try_get(4)?,
        generator: row.try_get(5)?,
        model: row.try_get(6)?,
        latest_version: row.try_get::<Option<i64>, _>(7)?.unwrap_or(0),
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

pub async fn by_id(state: &AppState, id: i64) -> ApiResult<Option<ScriptRow>> {
    let sql = format!("{COLUMNS} WHERE s.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// `owner`'s documents, the most recently saved first.
pub async fn of_owner(state: &AppState, owner: i64) -> ApiResult<Vec<ScriptRow>> {
    let sql =
        format!("{COLUMNS} WHERE s.owner_id = $1 ORDER BY s.updated_at DESC, s.id DESC LIMIT 200");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner)
        .fetch_all(state.db.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Whether `instructor` teaches a class `trainee` attends.
pub async fn teaches(state: &AppState, instructor: i64, trainee: i64) -> ApiResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT i.class_id FROM class_instructors i JOIN class_trainees t ON t.class_id = i.class_id \
         WHERE i.account_id = $1 AND t.account_id = $2 LIMIT 1",
    )
    .bind(instructor)
    .bind(trainee)
    .fetch_optional(state.db.pool())
    .await?;
    Ok(found.is_some())
}

/// What a new document records besides its first version.
pub struct NewScript<'a> {
    pub owner: i64,
    pub room_id: Option<i64>,
    pub generator: &'a str,
    pub model: Option<&'a str>,
}

fn body(script: &LiveScript) -> ApiResult<String> {
    serde_json::to_string(script).map_err(ApiError::internal)
}

/// Creates a document with `script` as version 1; returns its id.
pub async fn create(
    state: &AppState,
    new: NewScript<'_>,
    script: &LiveScript,
    now: i64,
) -> ApiResult<i64> {
    let body = body(script)?;
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO live_scripts (owner_id, room_id, title, generator, model, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(new.owner)
    .bind(new.room_id)
    .bind(&script.title)
    .bind(new.generator)
    .bind(new.model)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    sqlx::query(
        "INSERT INTO live_script_versions (script_id, version, body, created_at) VALUES ($1, 1, $2, $3)",
    )
    .bind(id)
    .bind(&body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Adds `script` as the next version of document `id`; with `base`, only when the latest version
/// is still `base` (someone else saved in between: conflict). Returns the new version number.
pub async fn add_version(
    state: &AppState,
    id: i64,
    script: &LiveScript,
    base: Option<i64>,
    now: i64,
) -> ApiResult<i64> {
    let body = body(script)?;
    let mut tx = state.db.begin_write().await?;
    // First, so that concurrent editors of one document queue on its row (PostgreSQL).
    sqlx::query("UPDATE live_scripts SET title = $1, updated_at = $2 WHERE id = $3")
        .bind(&script.title)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let latest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM live_script_versions WHERE script_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let latest = latest.unwrap_or(0);
    if let Some(base) = base
        && base != latest
    {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            format!("脚本已经有更新的版本（第 {latest} 版），请在最新版本上修改"),
        ));
    }
    let version = latest + 1;
    let inserted = sqlx::query(
        "INSERT INTO live_script_versions (script_id, version, body, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(version)
    .bind(&body)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if util::is_unique_violation(&e) => {
            return Err(ApiError::with_message(
                ErrorCode::Conflict,
                "脚本刚被保存过，请刷新后再保存",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(version)
}

/// One version of a document.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub version: i64,
    pub created_at: i64,
    pub script: LiveScript,
}

fn version_from_row(row: &sqlx::any::AnyRow) -> ApiResult<VersionRow> {
    let body: String = row.try_get(1)?;
    Ok(VersionRow {
        version: row.try_get(0)?,
        created_at: row.try_get(2)?,
        script: serde_json::from_str(&body).map_err(ApiError::internal)?,
    })
}

pub async fn version(state: &AppState, id: i64, version: i64) -> ApiResult<Option<VersionRow>> {
    let row = sqlx::query(
        "SELECT version, body, created_at FROM live_script_versions WHERE script_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(version)
    .fetch_optional(state.db.pool())
    .await?;
    row.as_ref().map(version_from_row).transpose()
}

/// Every version's number and time, oldest first.
pub async fn versions(state: &AppState, id: i64) -> ApiResult<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT version, created_at FROM live_script_versions WHERE script_id = $1 ORDER BY version",
    )
    .bind(id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?)
}
