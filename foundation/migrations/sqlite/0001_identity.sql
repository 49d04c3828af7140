-- Identity, organisation and audit. Timestamps are Unix milliseconds (BIGINT).
-- Keep in step with migrations/postgres/0001_identity.sql: same tables, columns and constraints.

CREATE TABLE regions (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE institutions (
    id INTEGER PRIMARY KEY,
    region_id BIGINT NOT NULL REFERENCES regions(id),
    name TEXT NOT NULL UNIQUE,
    license_no TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    contact_phone_enc TEXT,
    contact_phone_masked TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    phone_enc TEXT,
    phone_hash TEXT,
    phone_masked TEXT,
    id_number_enc TEXT,
    id_number_hash TEXT UNIQUE,
    id_number_masked TEXT,
    institution_id BIGINT REFERENCES institutions(id),
    region_id BIGINT REFERENCES regions(id),
    certificate_no TEXT,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    disabled BIGINT NOT NULL DEFAULT 0,
    password_changed_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX accounts_institution ON accounts(institution_id);
CREATE INDEX accounts_phone_hash ON accounts(phone_hash);

CREATE TABLE account_roles (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (account_id, role)
);

CREATE TABLE classes (
    id INTEGER PRIMARY KEY,
    institution_id BIGINT NOT NULL REFERENCES institutions(id),
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    edition TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX classes_institution ON classes(institution_id);

CREATE TABLE class_instructors (
    class_id BIGINT NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (class_id, account_id)
);
CREATE INDEX class_instructors_account ON class_instructors(account_id);

CREATE TABLE class_trainees (
    class_id BIGINT NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (class_id, account_id)
);
CREATE INDEX class_trainees_account ON class_trainees(account_id);

-- One row per account: the UNIQUE constraint is the "one active session per account" rule.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL UNIQUE REFERENCES accounts(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    client_ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT ''
);

-- Append-only, hash-chained. seq is assigned by the writer (previous + 1); the primary key
-- makes two concurrent appenders collide instead of forking the chain.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id BIGINT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Why a session token stopped working, so clients can be told "logged in elsewhere" rather than
-- "unknown token". Rows older than a week are pruned.
CREATE TABLE session_ends (
    token_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ended_at BIGINT NOT NULL
);
CREATE INDEX session_ends_ended_at ON session_ends(ended_at);
