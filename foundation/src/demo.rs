//! Demo data for an embedded first run: region 长春市, one institution with two instructors, an
//! institution admin, one live-edition class of 30 trainees, a supervisor and a platform admin.
//! Created once, only into a database without accounts. The password is the configured
//! `demo_password` or a generated one; either way it is written to `{data_dir}/demo-accounts.txt`
//! (mode 0600) so later starts can print it again.

use rand::Rng;
use sqlx::Row;

use crate::audit::AuditEvent;
use crate::error::ApiError;
use crate::identity::fields::{IdNumber, NewPassword, PersonName, Phone, Username};
use crate::identity::{ClientInfo, NewAccount, Role};
use crate::state::AppState;

/// What was created, for printing.
#[derive(Debug, Clone)]
pub struct DemoAccounts {
    pub password: String,
    pub accounts: Vec<(String, &'static str)>,
}

impl DemoAccounts {
    pub fn render(&self) -> String {
        let mut out = String::from("演示账号 demo accounts (password / 密码: ");
        out.push_str(&self.password);
        out.push_str(")\n");
        for (username, role) in &self.accounts {
            out.push_str(&format!("  {username:<14} {role}\n"));
        }
        out
    }
}

const TRAINEE_NAMES: [&str; 30] = [
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏", "周杰", "吴婷", "徐强", "孙丽",
    "马超", "朱琳", "胡斌", "郭蕾", "何鹏", "高雪", "林峰", "罗佳", "郑凯", "梁燕", "谢涛", "宋倩",
    "唐亮", "韩梅", "冯刚", "邓颖", "曹阳", "许晴",
];

fn demo_id_number(index: u32) -> IdNumber {
    // 220102 = 长春市南关区; birth dates spread over 1990s; sequence numbers from the index.
    let body = format!(
        "220102{:04}{:02}{:02}{:03}",
        1988 + index % 12,
        1 + index % 12,
        1 + index % 28,
        (100 + index) % 1000
    );
    let full = format!("{body}{}", IdNumber::check_code(&body));
    // The check code is computed above and the date is valid by construction.
    IdNumber::parse(&full).expect("generated demo ID numbers are valid")
}

fn demo_phone(index: u32) -> Phone {
    Phone::parse(&format!("1384310{index:04}")).expect("demo phone numbers are valid")
}

fn generate_password() -> String {
    const LETTERS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGITS: &[u8] = b"23456789";
    let mut rng = rand::thread_rng();
    let mut out: String = (0..8)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect();
    out.extend((0..4).map(|_| DIGITS[rng.gen_range(0..DIGITS.len())] as char));
    out
}

fn credentials_path(state: &AppState) -> std::path::PathBuf {
    state.config.data_dir.join("demo-accounts.txt")
}

/// The demo accounts as written when they were created, if this data directory has them.
pub fn saved_credentials(state: &AppState) -> Option<String> {
    std::fs::read_to_string(credentials_path(state)).ok()
}

/// Creates the demo data if the database has no accounts yet. Returns what it created.
pub async fn ensure_demo_data(state: &AppState) -> anyhow::Result<Option<DemoAccounts>> {
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM accounts")
        .fetch_one(state.db.pool())
        .await?
        .try_get(0)?;
    if count > 0 {
        return Ok(None);
    }
    let password = match &state.config.demo_password {
        Some(p) => NewPassword::parse(p).map_err(|_| {
            anyhow::anyhow!("demo_password must be at least 8 characters with letters and digits")
        })?,
        None => NewPassword::parse(&generate_password()).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let demo = create(state, &password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(&state.config.data_dir)?;
    let path = credentials_path(state);
    let _ = std::fs::remove_file(&path);
    crate::crypto::write_private_file(&path, &demo.render())?;
    Ok(Some(demo))
}

async fn create(state: &AppState, password: &NewPassword) -> Result<DemoAccounts, ApiError> {
    let now = state.clock.now_millis();
    let db = state.db.pool();
    let system = ClientInfo {
        ip: "demo-data".into(),
        user_agent: String::new(),
    };
    let region_id: i64 = sqlx::query(
        "INSERT INTO regions (code, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind("220100")
    .bind("长春市")
    .bind(now)
    .fetch_one(db)
    .await?
    .try_get(0)?;
    let keys = state.identity.keys();
    let contact = Phone::parse("13843100000")?;
    let institution_id: i64 = sqlx::query(
        "INSERT INTO institutions (region_id, name, license_no, address, contact_phone_enc, contact_phone_masked, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(region_id)
    .bind("长春市示范职业培训学校")
    .bind("JY22010020260001")
    .bind("吉林省长春市南关区人民大街 1 号")
    .bind(keys.fields.encrypt(contact.as_str()))
    .bind(contact.masked())
    .bind(now)
    .fetch_one(db)
    .await?
    .try_get(0)?;

    let mut accounts = Vec::new();
    let mut make = async |username: &str,
                          name: &str,
                          role: Role,
                          label: &'static str,
                          index: u32,
                          institution: Option<i64>,
                          region: Option<i64>,
                          certificate: Option<&str>|
           -> Result<i64, ApiError> {
        let id = state
            .identity
            .create_account(
                None,
                NewAccount {
                    username: Username::parse(username)?,
                    name: PersonName::parse(name)?,
                    password: password.clone(),
                    roles: vec![role],
                    phone: Some(demo_phone(index)),
                    id_number: Some(demo_id_number(index)),
                    institution_id: institution,
                    region_id: region,
                    certificate_no: certificate.map(str::to_owned),
                },
                &system,
            )
            .await?;
        accounts.push((username.to_owned(), label));
        Ok(id)
    };

    make(
        "admin",
        "系统管理员",
        Role::PlatformAdmin,
        "平台管理员 platform admin",
        901,
        None,
        None,
        None,
    )
    .await?;
    make(
        "supervisor01",
        "刘建国",
        Role::Supervisor,
        "主管部门 supervisor (长春市)",
        902,
        None,
        Some(region_id),
        None,
    )
    .await?;
    make(
        "institution01",
        "陈淑华",
        Role::InstitutionAdmin,
        "培训机构管理员 institution admin",
        903,
        Some(institution_id),
        None,
        None,
    )
    .await?;
    let instructor1 = make(
        "instructor01",
        "李明华",
        Role::Instructor,
        "讲师 instructor",
        904,
        Some(institution_id),
        None,
        Some("MLH-WLCY-2024-0107"),
    )
    .await?;
    let instructor2 = make(
        "instructor02",
        "赵雅琴",
        Role::Instructor,
        "讲师 instructor",
        905,
        Some(institution_id),
        None,
        Some("MLH-WLCY-2025-0032"),
    )
    .await?;
    let mut trainees = Vec::new();
    for (i, name) in TRAINEE_NAMES.iter().enumerate() {
        let n = i as u32 + 1;
        let label = if n == 1 {
            "学员 trainee (trainee01 … trainee30)"
        } else {
            "学员 trainee"
        };
        trainees.push(
            make(
                &format!("trainee{n:02}"),
                name,
                Role::Trainee,
                label,
                n,
                Some(institution_id),
                None,
                None,
            )
            .await?,
        );
    }
    // Only the first trainee is listed; the rest follow the same pattern.
    accounts.truncate(6);

    let mut tx = state.db.begin_write().await?;
    let class_id: i64 = sqlx::query(
        "INSERT INTO classes (institution_id, code, name, edition, status, start_date, end_date, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(institution_id)
    .bind("CC-2026-ZB-04")
    .bind("2026年第4期网络创业培训（直播版）")
    .bind("live")
    .bind("running")
    .bind("2026-11-09")
    .bind("2026-12-04")
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    for instructor in [instructor1, instructor2] {
        sqlx::query("INSERT INTO class_instructors (class_id, account_id) VALUES ($1, $2)")
            .bind(class_id)
            .bind(instructor)
            .execute(&mut *tx)
            .await?;
    }
    for trainee in &trainees {
        sqlx::query("INSERT INTO class_trainees (class_id, account_id) VALUES ($1, $2)")
            .bind(class_id)
            .bind(*trainee)
            .execute(&mut *tx)
            .await?;
    }
    state
        .audit
        .append_in(
            &mut tx,
            AuditEvent::new(None, "demo_data_created", format!("class:{class_id}"))
                .detail(serde_json::json!({"trainees": trainees.len()}))
                .ip("demo-data"),
        )
        .await?;
    tx.commit().await?;
    Ok(DemoAccounts {
        password: password.as_str().to_owned(),
        accounts,
    })
}

/// Adds `count` practice trainees (`{prefix}00001` …) to `class` (default: the first class),
/// all with `password`: for classes that practise with many buyers, and for load tests. The
/// password is hashed once (argon2id, salted once) and the PHC string shared, so a thousand
/// accounts take one hash; each login still verifies it in full. Existing usernames are
/// skipped. Returns how many were created.
pub async fn add_practice_trainees(
    state: &AppState,
    class: Option<i64>,
    prefix: &str,
    count: u32,
    password: &NewPassword,
) -> anyhow::Result<u32> {
    let db = state.db.pool();
    let class_id: i64 = match class {
        Some(id) => id,
        None => sqlx::query_scalar("SELECT id FROM classes ORDER BY id LIMIT 1")
            .fetch_optional(db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no class to add practice trainees to"))?,
    };
    let institution: i64 = sqlx::query_scalar("SELECT institution_id FROM classes WHERE id = $1")
        .bind(class_id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("class {class_id} does not exist"))?;
    let hash = state
        .identity
        .hash_password(password.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = state.clock.now_millis();
    let mut created = 0;
    for chunk in (1..=count).collect::<Vec<_>>().chunks(500) {
        let mut tx = state.db.begin_write().await?;
        for n in chunk {
            let username =
                Username::parse(&format!("{prefix}{n:05}")).map_err(|e| anyhow::anyhow!("{e}"))?;
            let row = sqlx::query(
                "INSERT INTO accounts (username, name, password_hash, institution_id, password_changed_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $5) ON CONFLICT (username) DO NOTHING RETURNING id",
            )
            .bind(username.as_str())
            .bind(format!("练习学员{n:05}"))
            .bind(&hash)
            .bind(institution)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let id: i64 = row.try_get(0)?;
            sqlx::query("INSERT INTO account_roles (account_id, role) VALUES ($1, $2)")
                .bind(id)
                .bind(Role::Trainee.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO class_trainees (class_id, account_id) VALUES ($1, $2)")
                .bind(class_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            created += 1;
        }
        state
            .audit
            .append_in(
                &mut tx,
                AuditEvent::new(
                    None,
                    "practice_trainees_created",
                    format!("class:{class_id}"),
                )
                .detail(serde_json::json!({"prefix": prefix, "accounts": chunk.len()}))
                .ip("cli"),
            )
            .await?;
        tx.commit().await?;
    }
    Ok(created)
}
