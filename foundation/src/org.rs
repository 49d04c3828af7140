//! The organisation model — regions, institutions, instructors, classes (班期) and their
//! trainees — and the one place that decides who may see which of them.
//!
//! Scope rule (invariant): every list and lookup here filters by [`Scope`], built from the
//! caller's roles: a platform admin sees everything, a supervisor their region, an institution
//! admin their institution, an instructor the classes they teach, a trainee the classes they are
//! in. Something outside the caller's scope is answered as "not found", never "forbidden", so ids
//! of other institutions reveal nothing.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Principal, Role};

/// What a caller may see, as SQL parameters (`None` binds NULL, which matches nothing).
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub all: bool,
    pub region: Option<i64>,
    pub institution: Option<i64>,
    pub instructor: Option<i64>,
    pub trainee: Option<i64>,
    /// A buyer bot's class: the only class it sees (see `Principal::bot_class`).
    pub bot_class: Option<i64>,
}

impl Scope {
    pub fn of(p: &Principal) -> Self {
        Self {
            all: p.has(Role::PlatformAdmin),
            region: p.region_id.filter(|_| p.has(Role::Supervisor)),
            institution: p.institution_id.filter(|_| p.has(Role::InstitutionAdmin)),
            instructor: p.has(Role::Instructor).then_some(p.account_id),
            trainee: p.has(Role::Trainee).then_some(p.account_id),
            bot_class: p.bot_class,
        }
    }

    fn all_flag(&self) -> i64 {
        i64::from(self.all)
    }
}

/// `WHERE` clause selecting the classes (alias `c`, joined institution `i`) in scope; parameters
/// $1 all, $2 region, $3 institution, $4 instructor, $5 trainee.
macro_rules! class_scope {
    () => {
        "($1 = 1 OR i.region_id = $2 OR c.institution_id = $3 \
          OR c.id IN (SELECT ci.class_id FROM class_instructors ci WHERE ci.account_id = $4) \
          OR c.id IN (SELECT ct.class_id FROM class_trainees ct WHERE ct.account_id = $5))"
    };
}

macro_rules! class_columns {
    () => {
        "SELECT c.id, c.name, c.code, c.status, c.edition, c.start_date, c.end_date, i.id, i.name, \
         (SELECT COUNT(*) FROM class_trainees t WHERE t.class_id = c.id) \
         FROM classes c JOIN institutions i ON i.id = c.institution_id WHERE "
    };
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ref {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassSummary {
    pub id: i64,
    pub name: String,
    pub code: String,
    /// planned | running | finished
    pub status: String,
    /// live | ecommerce
    pub edition: String,
    pub start_date: String,
    pub end_date: String,
    pub institution: Ref,
    pub instructors: Vec<Ref>,
    pub trainee_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassInstructor {
    pub id: i64,
    pub name: String,
    pub certificate_no: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassTrainee {
    pub id: i64,
    pub username: String,
    pub name: String,
    /// Shown to staff only; `null` for trainees looking at classmates.
    pub phone_masked: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassDetail {
    pub id: i64,
    pub name: String,
    pub code: String,
    pub status: String,
    pub edition: String,
    pub start_date: String,
    pub end_date: String,
    pub institution: Ref,
    pub instructors: Vec<ClassInstructor>,
    pub trainee_count: i64,
    pub trainees: Vec<ClassTrainee>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstitutionSummary {
    pub id: i64,
    pub name: String,
    pub region: Ref,
    pub license_no: String,
    pub address: String,
    pub contact_phone_masked: Option<String>,
    pub instructor_count: i64,
    pub class_count: i64,
    pub trainee_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstitutionDetail {
    #[serde(flatten)]
    pub summary: InstitutionSummary,
    pub instructors: Vec<Instructor>,
    pub classes: Vec<ClassSummary>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Instructor {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub certificate_no: Option<String>,
    pub institution: Ref,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegionSummary {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub institution_count: i64,
}

/// Organisation queries, always scoped.
#[derive(Debug, Clone)]
pub struct Org {
    db: Db,
}

fn bind_scope<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    s: &Scope,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(s.all_flag())
        .bind(s.region)
        .bind(s.institution)
        .bind(s.instructor)
        .bind(s.trainee)
}

fn class_from_row(row: &sqlx::any::AnyRow) -> Result<ClassSummary, sqlx::Error> {
    Ok(ClassSummary {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        code: row.try_get(2)?,
        status: row.try_get(3)?,
        edition: row.try_get(4)?,
        start_date: row.try_get(5)?,
        end_date: row.try_get(6)?,
        institution: Ref {
            id: row.try_get(7)?,
            name: row.try_get(8)?,
        },
        instructors: Vec::new(),
        trainee_count: row.try_get(9)?,
    })
}

impl Org {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Classes in scope, newest first, with their instructors.
    pub async fn classes(&self, scope: &Scope) -> ApiResult<Vec<ClassSummary>> {
        let rows = bind_scope(
            sqlx::query(concat!(
                class_columns!(),
                class_scope!(),
                " ORDER BY c.start_date DESC, c.id"
            )),
            scope,
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut classes: Vec<ClassSummary> =
            rows.iter().map(class_from_row).collect::<Result<_, _>>()?;
        let instructor_rows = bind_scope(
            sqlx::query(concat!(
                "SELECT x.class_id, a.id, a.name FROM class_instructors x \
                 JOIN accounts a ON a.id = x.account_id \
                 JOIN classes c ON c.id = x.class_id JOIN institutions i ON i.id = c.institution_id WHERE ",
                class_scope!(),
                " ORDER BY a.name"
            )),
            scope,
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut by_class: HashMap<i64, Vec<Ref>> = HashMap::new();
        for row in &instructor_rows {
            by_class.entry(row.try_get(0)?).or_default().push(Ref {
                id: row.try_get(1)?,
                name: row.try_get(2)?,
            });
        }
        for class in &mut classes {
            class.instructors = by_class.remove(&class.id).unwrap_or_default();
        }
        Ok(classes)
    }

    /// Is the class in scope?
    pub async fn class_visible(&self, scope: &Scope, class_id: i64) -> ApiResult<bool> {
        // A bot is no member of any class (not in rosters), yet buys in its own class's rooms.
        if let Some(class) = scope.bot_class {
            return Ok(class == class_id);
        }
        let row = bind_scope(
            sqlx::query(concat!(
                "SELECT c.id FROM classes c JOIN institutions i ON i.id = c.institution_id WHERE c.id = $6 AND ",
                class_scope!()
            )),
            scope,
        )
        .bind(class_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// One class with its instructors and trainees; `not_found` outside scope.
    pub async fn class_detail(
        &self,
        principal: &Principal,
        class_id: i64,
    ) -> ApiResult<ClassDetail> {
        let scope = Scope::of(principal);
        let row = bind_scope(
            sqlx::query(concat!(class_columns!(), "c.id = $6 AND ", class_scope!())),
            &scope,
        )
        .bind(class_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(ApiError::not_found)?;
        let summary = class_from_row(&row)?;
        let instructors = sqlx::query(
            "SELECT a.id, a.name, a.certificate_no FROM class_instructors x JOIN accounts a ON a.id = x.account_id \
             WHERE x.class_id = $1 ORDER BY a.name",
        )
        .bind(class_id)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ClassInstructor {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                certificate_no: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let staff = scope.all
            || scope.region.is_some()
            || scope.institution.is_some()
            || instructors.iter().any(|i| i.id == principal.account_id);
        let trainees = sqlx::query(
            "SELECT a.id, a.username, a.name, a.phone_masked FROM class_trainees x JOIN accounts a ON a.id = x.account_id \
             WHERE x.class_id = $1 ORDER BY a.username",
        )
        .bind(class_id)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ClassTrainee {
                id: r.try_get(0)?,
                username: r.try_get(1)?,
                name: r.try_get(2)?,
                phone_masked: if staff { r.try_get(3)? } else { None },
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(ClassDetail {
            id: summary.id,
            name: summary.name,
            code: summary.code,
            status: summary.status,
            edition: summary.edition,
            start_date: summary.start_date,
            end_date: summary.end_date,
            institution: summary.institution,
            instructors,
            trainee_count: summary.trainee_count,
            trainees,
        })
    }

    /// Institutions in scope (platform admin, supervisor's region, institution admin's own).
    pub async fn institutions(&self, scope: &Scope) -> ApiResult<Vec<InstitutionSummary>> {
        let rows = sqlx::query(
            "SELECT i.id, i.name, r.id, r.name, i.license_no, i.address, i.contact_phone_masked, \
             (SELECT COUNT(*) FROM accounts a JOIN account_roles ar ON ar.account_id = a.id AND ar.role = 'instructor' WHERE a.institution_id = i.id), \
             (SELECT COUNT(*) FROM classes c WHERE c.institution_id = i.id), \
             (SELECT COUNT(DISTINCT ct.account_id) FROM class_trainees ct JOIN classes c ON c.id = ct.class_id WHERE c.institution_id = i.id) \
             FROM institutions i JOIN regions r ON r.id = i.region_id \
             WHERE $1 = 1 OR i.region_id = $2 OR i.id = $3 ORDER BY i.name",
        )
        .bind(scope.all_flag())
        .bind(scope.region)
        .bind(scope.institution)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InstitutionSummary {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    region: Ref {
                        id: row.try_get(2)?,
                        name: row.try_get(3)?,
                    },
                    license_no: row.try_get(4)?,
                    address: row.try_get(5)?,
                    contact_phone_masked: row.try_get(6)?,
                    instructor_count: row.try_get(7)?,
                    class_count: row.try_get(8)?,
                    trainee_count: row.try_get(9)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::from)
    }

    pub async fn institution_detail(
        &self,
        principal: &Principal,
        id: i64,
    ) -> ApiResult<InstitutionDetail> {
        let scope = Scope::of(principal);
        let summary = self
            .institutions(&scope)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(ApiError::not_found)?;
        let instructors = self
            .instructors(&scope)
            .await?
            .into_iter()
            .filter(|i| i.institution.id == id)
            .collect();
        let classes = self
            .classes(&scope)
            .await?
            .into_iter()
            .filter(|c| c.institution.id == id)
            .collect();
        Ok(InstitutionDetail {
            summary,
            instructors,
            classes,
        })
    }

    /// Instructors in scope; a trainee sees the instructors of their classes, an instructor the
    /// colleagues of their institution.
    pub async fn instructors(&self, scope: &Scope) -> ApiResult<Vec<Instructor>> {
        let rows = sqlx::query(
            "SELECT a.id, a.username, a.name, a.certificate_no, i.id, i.name FROM accounts a \
             JOIN account_roles ar ON ar.account_id = a.id AND ar.role = 'instructor' \
             JOIN institutions i ON i.id = a.institution_id \
             WHERE $1 = 1 OR i.region_id = $2 OR i.id = $3 \
             OR i.id IN (SELECT b.institution_id FROM accounts b WHERE b.id = $4) \
             OR a.id IN (SELECT ci.account_id FROM class_instructors ci JOIN class_trainees ct ON ct.class_id = ci.class_id WHERE ct.account_id = $5) \
             ORDER BY a.name",
        )
        .bind(scope.all_flag())
        .bind(scope.region)
        .bind(scope.institution)
        .bind(scope.instructor)
        .bind(scope.trainee)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Instructor {
                    id: row.try_get(0)?,
                    username: row.try_get(1)?,
                    name: row.try_get(2)?,
                    certificate_no: row.try_get(3)?,
                    institution: Ref {
                        id: row.try_get(4)?,
                        name: row.try_get(5)?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::from)
    }

    /// Regions in scope (platform admin: all; supervisor: their own).
    pub async fn regions(&self, scope: &Scope) -> ApiResult<Vec<RegionSummary>> {
        let rows = sqlx::query(
            "SELECT r.id, r.code, r.name, (SELECT COUNT(*) FROM institutions i WHERE i.region_id = r.id) \
             FROM regions r WHERE $1 = 1 OR r.id = $2 ORDER BY r.code",
        )
        .bind(scope.all_flag())
        .bind(scope.region)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RegionSummary {
                    id: row.try_get(0)?,
                    code: row.try_get(1)?,
                    name: row.try_get(2)?,
                    institution_count: row.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::from)
    }
}
