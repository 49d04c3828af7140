-- Short videos of products (commerce crate, videos.rs): an upload is transcoded to an H.264/AAC
-- MP4 with a JPEG cover. The files live under `{data_dir}/videos/{id}/`, never named here.
-- Keep in step with the other engine's 0007_product_videos.sql.

CREATE TABLE product_videos (
    id INTEGER PRIMARY KEY,
    product_id BIGINT NOT NULL REFERENCES products(id),
    uploader_id BIGINT NOT NULL REFERENCES accounts(id),
    -- processing | ready | failed
    status TEXT NOT NULL,
    -- The data directory that holds the files (its `videos/store-id`): after a restart a node
    -- resumes only its own jobs.
    store_id TEXT NOT NULL,
    -- Transcoding attempts started (a restart in the middle retries, up to a bound).
    attempts BIGINT NOT NULL DEFAULT 0,
    source_bytes BIGINT NOT NULL,
    -- Set when ready.
    bytes BIGINT,
    duration_ms BIGINT,
    width BIGINT,
    height BIGINT,
    has_audio BIGINT,
    -- Set when failed: video_unsupported | video_undecodable | video_too_long | video_too_short
    -- | video_timeout | interrupted | internal
    error TEXT,
    created_at BIGINT NOT NULL,
    ready_at BIGINT
);
CREATE INDEX product_videos_product ON product_videos(product_id);
CREATE INDEX product_videos_status ON product_videos(status);
