-- AI live scripts (直播脚本, commerce crate): a trainee's script documents and every version of
-- them. A version's body is the script as JSON (commerce::script::LiveScript); versions are
-- never changed or deleted, an edit adds the next number.
-- Keep in step with the other engine's 0005_live_scripts.sql.

CREATE TABLE live_scripts (
    id INTEGER PRIMARY KEY,
    owner_id BIGINT NOT NULL REFERENCES accounts(id),
    room_id BIGINT REFERENCES rooms(id),
    -- the latest version's title
    title TEXT NOT NULL,
    -- llm | template | manual: what wrote the first version
    generator TEXT NOT NULL,
    -- the model of an llm script
    model TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX live_scripts_owner ON live_scripts(owner_id, updated_at);

CREATE TABLE live_script_versions (
    script_id BIGINT NOT NULL REFERENCES live_scripts(id),
    version BIGINT NOT NULL CHECK (version >= 1),
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (script_id, version)
);
