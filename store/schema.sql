-- The store's index. The single truth about what the store holds; docs/storage.md
-- states the invariants that tie these rows to files on disk.
-- Times are integer microseconds since the Unix epoch (UTC); units are in column names.

PRAGMA journal_mode = WAL;

-- Which version of this schema the file has; one row.
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL          -- bumped by every migration
);

-- One row per stored segment file. A row is inserted only after its file is
-- durable under its final name, so every row points at a complete file.
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,           -- row id, stable for the life of the row
    camera TEXT NOT NULL,             -- camera id, validated ([a-z0-9][a-z0-9_-]{0,31})
    node TEXT NOT NULL,               -- id of the node that recorded it
    start_us INTEGER NOT NULL,        -- capture time of the first frame
    end_us INTEGER NOT NULL,          -- capture time of the last frame plus one frame interval
    frames INTEGER NOT NULL,          -- number of video frames in the file
    size_bytes INTEGER NOT NULL,      -- file size in bytes
    sha256 TEXT NOT NULL,             -- hex SHA-256 of the whole file, as sent by the node and verified
    codec TEXT NOT NULL,              -- 'h264'
    width_px INTEGER NOT NULL,        -- frame width, 0 if the node did not say
    height_px INTEGER NOT NULL,       -- frame height, 0 if the node did not say
    path TEXT NOT NULL,               -- file path relative to the store root
    received_us INTEGER NOT NULL,     -- when the store indexed it (just before the ack)
    UNIQUE (camera, start_us)         -- a segment's identity: resends are recognised by it
);

CREATE INDEX IF NOT EXISTS segments_by_camera_time ON segments (camera, start_us);

-- Nodes the store has received segments from.
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,            -- node id
    first_seen_us INTEGER NOT NULL,   -- when its first segment was indexed
    last_seen_us INTEGER NOT NULL     -- when its latest segment was indexed
);
