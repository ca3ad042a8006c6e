-- The store's index. The single truth about what the store holds; docs/storage.md
-- states the invariants that tie these rows to files on disk.
-- Times are integer microseconds since the Unix epoch (UTC); units are in column names.

PRAGMA journal_mode = WAL;

-- Which version of this schema the file has; one row.
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL          -- bumped by every migration
);

-- One row per stored segment file. A row is inserted only after its file is
-- durable under its final name, and deleted before its file is, so every row
-- points at a complete file.
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
    -- Version 5: the segment's shape, what a /recordings layout needs of a segment it does not cut
    -- (store/playback/segment_shape.py says each). Derived from the file's own sample table at ingest,
    -- never trusted over it; NULL: not known yet (rows from before version 5, a table playback cannot
    -- read), filled lazily by playback. An upgraded index gets them by ALTER TABLE, at the end as here
    -- (store/index/migrations.py SEGMENT_COLUMNS_5).
    play_samples INTEGER,             -- samples (frames) in the file
    play_keyframes INTEGER,           -- sync samples among them
    play_lead INTEGER,                -- samples before the first keyframe
    play_payload_bytes INTEGER,       -- all samples' bytes
    play_data_offset INTEGER,         -- file offset of sample 0 when the samples lie back to back; NULL if not
    play_timescale INTEGER,           -- the video track's ticks a second (90000 for a node's segments)
    play_last_dts INTEGER,            -- the last sample's decode time, ticks from the first's
    play_end_dts INTEGER,             -- the end of the last sample (its decode time plus its duration), ticks
    play_time_runs INTEGER,           -- stts entries of the segment taken whole (runs of equal durations)
    play_codec TEXT,                  -- digest of the sample description: equal digests, one track
    UNIQUE (camera, start_us)         -- a segment's identity: resends are recognised by it
);

-- Segment files retention still has to delete (store/garbage.py): per camera and UTC hour, the range
-- of start times of the rows one batch deleted. A row comes here in the transaction that deletes those
-- segments rows, and leaves only after every file in its range without a segments row is gone:
-- a crash in between never forgets a file.
CREATE TABLE IF NOT EXISTS garbage (
    id INTEGER PRIMARY KEY,           -- order of arrival
    camera TEXT NOT NULL,             -- camera id
    from_us INTEGER NOT NULL,         -- start_us of the first segment deleted
    to_us INTEGER NOT NULL,           -- start_us of the last segment deleted (inclusive)
    segments INTEGER NOT NULL,        -- how many segments rows went
    size_bytes INTEGER NOT NULL,      -- their total size: free space to come
    failed INTEGER NOT NULL DEFAULT 0 -- 1: a collection could not delete all its files (see the log); no
                                      --   longer counted as free space to come
);

-- Timeline summaries (store/coverage.py, store/timeline.py): per camera and UTC hour, what a
-- timeline needs, so a camera-day is 24 rows, not 8,640 segments. Derived from segments and
-- trusted only while dirty = 0: every change to segments marks the hours it touches dirty in
-- the same transaction; the store recomputes them in the background.
CREATE TABLE IF NOT EXISTS coverage_hours (
    camera TEXT NOT NULL,             -- camera id
    hour_us INTEGER NOT NULL,         -- start of the UTC hour
    segments INTEGER NOT NULL,        -- segments that start in the hour
    recorded_us INTEGER NOT NULL,     -- time covered by segments within the hour (overlaps counted twice)
    intervals TEXT NOT NULL,          -- JSON [[start_us, end_us], ...]: recorded intervals clipped to the
                                      --   hour, merged across gaps under 250 ms
    dirty INTEGER NOT NULL,           -- 1: segments changed since the summary; read them instead
    playback TEXT,                    -- JSON: what /recordings' sizing needs of the segments that start in
                                      --   the hour (store/playback/parts.py); NULL until summarised (v5)
    PRIMARY KEY (camera, hour_us)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS coverage_hours_dirty ON coverage_hours (hour_us) WHERE dirty = 1;

-- Search and timelines use the UNIQUE (camera, start_us) index above: one camera's segments in time order.
-- Retention: the oldest segments of all cameras first.
CREATE INDEX IF NOT EXISTS segments_by_time ON segments (start_us);

-- Detected events (motion, later others). Sent by nodes; linked to segments by
-- time overlap on the same camera, not by foreign key, so either can arrive first.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,           -- row id; the API's event id
    camera TEXT NOT NULL,             -- camera id
    node TEXT NOT NULL,               -- node that detected it
    start_us INTEGER NOT NULL,        -- first frame with motion
    end_us INTEGER NOT NULL,          -- end of the event (after the quiet period)
    kind TEXT NOT NULL,               -- 'motion', or 'loss' (footage a node had to drop; see detail)
    score REAL NOT NULL,              -- peak score, 0..1 (0 for a loss)
    bbox_x REAL,                      -- bounding box of all motion, normalised 0..1 (left)
    bbox_y REAL,                      -- (top)
    bbox_w REAL,                      -- (width)
    bbox_h REAL,                      -- (height)
    thumb_us INTEGER,                 -- representative time for its thumbnail
    detail TEXT NOT NULL DEFAULT '',  -- what the node said about it, e.g. why footage was lost
    locked INTEGER NOT NULL DEFAULT 0,  -- 1: retention never deletes segments overlapping it
    -- Version 3 (object detection). An index upgraded from version 2 gets these by ALTER TABLE, at the end
    -- as here (store/index/migrations.py EVENT_COLUMNS_3), so both have the same column order.
    open INTEGER NOT NULL DEFAULT 0,  -- 1: still going on (a v3 node sent it at its start); end_us is the
                                      --   latest known. 0: over, for good. 2: over as far as the store knows
                                      --   (a newer event of its camera came; its node restarted?), but the
                                      --   node's own close is still taken if it comes
    label TEXT,                       -- what the store's detector confirmed in it (e.g. 'person'), its best
                                      --   object; NULL: nothing confirmed (or never analysed: see labels)
    label_score REAL,                 -- that object's median score, 0..1; NULL without a label
    label_x REAL,                     -- that object's box in its best frame, normalised 0..1 (left)
    label_y REAL,                     -- (top)
    label_w REAL,                     -- (width)
    label_h REAL,                     -- (height)
    labels TEXT,                      -- JSON object: each confirmed label -> the most seen at once;
                                      --   NULL: never analysed, '{}': analysed, nothing confirmed
    UNIQUE (camera, start_us, kind)   -- an event's identity: resends are recognised by it
);

CREATE INDEX IF NOT EXISTS events_by_camera_time ON events (camera, start_us);
-- The longest event (MAX(end_us - start_us)) bounds every event range query; without this
-- index that MAX is a full scan of the table on each timeline and events request.
CREATE INDEX IF NOT EXISTS events_by_length ON events (end_us - start_us);
CREATE INDEX IF NOT EXISTS events_locked ON events (camera, start_us) WHERE locked = 1;
-- The events still open: what object detection watches, and what it finds again after a restart.
CREATE INDEX IF NOT EXISTS events_open ON events (camera, start_us) WHERE open = 1;

-- Search by label (version 3): one row per event and confirmed label, as events.labels says; written
-- with it in one transaction (store/index/event_labels.py).
CREATE TABLE IF NOT EXISTS event_labels (
    label TEXT NOT NULL,              -- e.g. 'person'
    event_id INTEGER NOT NULL,        -- events.id
    count INTEGER NOT NULL,           -- the most objects with this label seen at once
    PRIMARY KEY (label, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_labels_by_event ON event_labels (event_id);

-- An event's snapshot (version 3): its best frame with the labelled object's box drawn, as JPEG.
-- Written by the store's object detection when a label is confirmed, and replaced when it improves.
CREATE TABLE IF NOT EXISTS event_snapshots (
    event_id INTEGER PRIMARY KEY,     -- events.id
    frame_us INTEGER NOT NULL,        -- capture time of the frame
    width INTEGER NOT NULL,           -- JPEG width in pixels
    height INTEGER NOT NULL,          -- JPEG height in pixels
    jpeg BLOB NOT NULL                -- the image
);

-- Nodes the store knows: from their control connection (hello, heartbeats) or segments.
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,            -- node id
    first_seen_us INTEGER NOT NULL,   -- first hello or segment
    last_seen_us INTEGER NOT NULL,    -- latest hello, heartbeat or segment
    url TEXT,                         -- where its /live and /health are, as it announced
    cameras TEXT,                     -- JSON array of its camera ids, as it announced
    -- Stores sharing a PostgreSQL index (store/nodes/fleet_table.py; NULL on SQLite, whose one store keeps them
    -- in memory): what the store holding the node's control link last wrote, so that every store shows it.
    state TEXT,                       -- 'up' or 'down', as its link's store (or the watchdog) last decided
    state_changed_us INTEGER,         -- when that state began
    link_store TEXT,                  -- the store holding its control link ('HOST:PORT'); NULL: none
    refreshed_us INTEGER,             -- when link_store last wrote the row (every 2 s while it holds the link)
    health TEXT                       -- JSON: the NodeHealth of its last heartbeat
);

-- Current runtime settings per camera (only those changed from their defaults).
CREATE TABLE IF NOT EXISTS settings (
    camera TEXT NOT NULL,             -- camera id
    key TEXT NOT NULL,                -- 'recording_mode', 'motion_sensitivity', 'retention_days'
    value TEXT NOT NULL,              -- JSON value
    changed_us INTEGER NOT NULL,      -- when it was last set
    changed_by TEXT NOT NULL,         -- who set it (token subject, or 'cli')
    pushed_us INTEGER,                -- when the store holding its node's link sent this value (stores sharing
                                      -- a PostgreSQL index); NULL: not yet (each change resets it)
    PRIMARY KEY (camera, key)
);

-- Every change to a runtime setting, oldest first.
CREATE TABLE IF NOT EXISTS settings_history (
    id INTEGER PRIMARY KEY,           -- order of changes
    camera TEXT NOT NULL,             -- camera id
    key TEXT NOT NULL,                -- setting name
    old_value TEXT NOT NULL,          -- JSON value in effect before (the default if never set)
    new_value TEXT NOT NULL,          -- JSON value after
    changed_us INTEGER NOT NULL,      -- when
    changed_by TEXT NOT NULL          -- who
);

CREATE INDEX IF NOT EXISTS settings_history_by_camera ON settings_history (camera, id);

-- Tokens of the stores sharing a PostgreSQL index (store/admin/index_keys.py): the one key pair they all sign
-- and verify with, the tokens made and the revoked ones. A store on SQLite keeps all three in ROOT/keys/
-- files instead (store/admin/keys.py) and leaves these tables empty.
CREATE TABLE IF NOT EXISTS signing_keys (
    name TEXT PRIMARY KEY,            -- 'store': the key pair of every store on this index (one row)
    private_pem TEXT,                 -- Ed25519 private key, PKCS#8 PEM, unencrypted: whoever can read this
                                      --   row can make tokens of any role (docs/security.md). NULL: the
                                      --   stores read it from a key file (sht store --key-file)
    public_pem TEXT NOT NULL,         -- its public key, PEM: what GET /key serves and nodes verify with
    created_us INTEGER NOT NULL,      -- when it was made, or brought in from a store's ROOT/keys/
    origin TEXT NOT NULL              -- 'generated', 'key file', or the ROOT/keys/ directory it came from
);

-- Every token made with the key above (never the token itself): what `sht token list --index` shows and
-- what `sht token revoke --index` accepts.
CREATE TABLE IF NOT EXISTS issued_tokens (
    token_id TEXT PRIMARY KEY,        -- the token's id (its jti claim)
    role TEXT NOT NULL,               -- node, viewer, admin or detector
    subject TEXT NOT NULL,            -- who or what it is for (its sub claim)
    expires INTEGER NOT NULL,         -- Unix seconds (its exp claim)
    issued INTEGER NOT NULL           -- Unix seconds, when it was made
);

-- Revoked tokens: every store re-reads this table each second and refuses them (store/admin/index_keys.py).
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id TEXT PRIMARY KEY,        -- issued_tokens.token_id
    revoked_us INTEGER NOT NULL       -- when
);
