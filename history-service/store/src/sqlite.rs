//! The embedded store: SQLite in WAL mode, one connection driven from the blocking pool.

use crate::contract::{
    name_prefix_end, Bot, Media, Notifications, Page, Presented, PushDevice, PushJob, ReactionCount, RefreshToken,
    Retention, Room, SearchScope, Store, StoreError, OUTBOX_FOLLOWER_KEEP_MS, PUSH_DUE_HOLD_MS, UNREAD_CAP,
};
use crate::outbox::Directive;
use crate::words::words;
use async_trait::async_trait;
use roost_protocol::{now_millis, Envelope, MessageKind, PresenceAggregate, PresenceStatus, ReceiptStamped};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- family: the sign-in a token descends from (older rows: none, the token is its own family);
-- uses: how often it was presented (kept after use to recognise a replay)
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    family TEXT,
    uses INTEGER NOT NULL DEFAULT 0
);
-- sign-in families revoked because a used refresh token came back, until their tokens expire
CREATE TABLE IF NOT EXISTS revoked_refresh_families (
    family TEXT PRIMARY KEY,
    until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    private INTEGER NOT NULL,
    owner TEXT NOT NULL,
    direct INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (room, user)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members (user);
CREATE TABLE IF NOT EXISTS bots (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- next: the first number not yet leased; floor: numbers below it belong to an earlier room
-- of the same name (deleted), whatever is written under them later
CREATE TABLE IF NOT EXISTS room_seq (
    room TEXT PRIMARY KEY,
    next INTEGER NOT NULL,
    floor INTEGER NOT NULL DEFAULT 0
);
-- A rowid table: rows append in arrival order and only the small (room, seq) index is updated
-- in place. Clustered on (room, seq) (WITHOUT ROWID), interleaved rooms dirtied a page per
-- message: 100k messages over 1,000 rooms in batches of 50 took 4.2 s; this way 1.3 s.
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    attachments TEXT,
    reply_to INTEGER,
    data TEXT,
    mentions TEXT,
    -- an event (edit, delete, reaction) and the seq of the message it changes; NULL: a message
    kind TEXT,
    target INTEGER,
    reaction_key TEXT,
    reaction_on INTEGER,
    -- a message's newest edit (its time and seq) and, for a tombstone, who deleted it
    edited_at INTEGER,
    edited_seq INTEGER,
    deleted_by TEXT,
    PRIMARY KEY (room, seq)
);
-- a client's retry of a message (same id) after a reconnect is stored once
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (room, sender, id);
-- who reacted to which message with what; rowid: the order keys were first given
CREATE TABLE IF NOT EXISTS reactions (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (room, seq, key, user)
);
CREATE TABLE IF NOT EXISTS receipts (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    read_seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (room, user)
);
CREATE TABLE IF NOT EXISTS presence (
    user TEXT PRIMARY KEY,
    online INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    last_seen INTEGER
);
-- uploads; room_gone: its room was deleted, or the one message showing it: the bytes await the sweeper
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    uploader TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    created_at INTEGER NOT NULL,
    referenced_by INTEGER,
    referenced_at INTEGER,
    room_gone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS media_by_room ON media (room);
CREATE INDEX IF NOT EXISTS media_by_uploader ON media (uploader);
-- target: the PushTarget as JSON (its kind and where it reaches)
CREATE TABLE IF NOT EXISTS push_devices (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user, device)
);
-- setting: the Notifications as JSON
CREATE TABLE IF NOT EXISTS notification_settings (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    setting TEXT NOT NULL,
    PRIMARY KEY (room, user)
);
-- stored messages whose pushes are not planned yet, by the message's rowid (written with the
-- message; a small row, so planning rewrites no message); lease_until: a planner holds it (at
-- first the writer, which plans what it wrote)
CREATE TABLE IF NOT EXISTS push_due (
    msg INTEGER PRIMARY KEY,
    lease_until INTEGER NOT NULL DEFAULT 0
);
-- pushes owed, one per (device, room); lease_until: a sender holds it until then
CREATE TABLE IF NOT EXISTS push_jobs (
    device TEXT NOT NULL,
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    ts INTEGER NOT NULL,
    preview TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, room)
);
CREATE INDEX IF NOT EXISTS push_jobs_by_time ON push_jobs (not_before);
CREATE TABLE IF NOT EXISTS outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    directive TEXT NOT NULL
);
-- jobs one process at a time runs, and who does until when
CREATE TABLE IF NOT EXISTS leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL
);
-- each broker following the outbox: how far it applied it, and when it last said so
CREATE TABLE IF NOT EXISTS outbox_followers (
    node TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    at INTEGER NOT NULL
);
-- one follower's record, before several nodes
DROP TABLE IF EXISTS outbox_applied;
";

/// SQLite-backed [`Store`]; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the database file at `path` and its schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        add_missing_columns(&conn).map_err(unavailable)?;
        conn.execute_batch(INDEXES_ON_ADDED_COLUMNS).map_err(unavailable)?;
        index_words(&mut conn).map_err(unavailable)?;
        // one process owns the file: what a process before it held when it died is free now
        conn.execute_batch(
            "UPDATE push_due SET lease_until = 0 WHERE lease_until > 0;
             UPDATE push_jobs SET lease_until = 0 WHERE lease_until > 0;",
        )
        .map_err(unavailable)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `work` on the connection in the blocking pool.
    async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
            work(&mut conn).map_err(classify)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

/// Indexes over columns that [`ADDED_COLUMNS`] may have added: made once those exist.
const INDEXES_ON_ADDED_COLUMNS: &str = "
CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens (family);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires_at);
-- the events of a message, for a delete to erase its edits; messages are left out
CREATE INDEX IF NOT EXISTS messages_by_target ON messages (room, target) WHERE target IS NOT NULL;
";

/// Columns added after their table was first released, as `(table, column, type)`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("messages", "data", "TEXT"),
    ("messages", "mentions", "TEXT"),
    ("messages", "kind", "TEXT"),
    ("messages", "target", "INTEGER"),
    ("messages", "reaction_key", "TEXT"),
    ("messages", "reaction_on", "INTEGER"),
    ("messages", "edited_at", "INTEGER"),
    ("messages", "edited_seq", "INTEGER"),
    ("messages", "deleted_by", "TEXT"),
    ("room_seq", "floor", "INTEGER NOT NULL DEFAULT 0"),
    ("refresh_tokens", "family", "TEXT"),
    ("refresh_tokens", "uses", "INTEGER NOT NULL DEFAULT 0"),
];

/// The words of every message's current body, for search: a contentless FTS5 index by the
/// message's rowid, of its room's term ([`room_term`]) and the words [`words`] finds, joined by
/// spaces. The `ascii` tokenizer splits on ASCII spaces and punctuation only, none of which a
/// word holds, so the index keeps the words as they were given. Search asks which messages have
/// a word, never where in the message: no positions are kept (`detail = none`), which makes
/// writing the index far cheaper. Deleting a message drops its words.
const WORDS_INDEX: &str = "
CREATE VIRTUAL TABLE message_words USING fts5(
    words, content = '', contentless_delete = 1, detail = none, tokenize = 'ascii');
INSERT INTO message_words (message_words, rank) VALUES ('automerge', 16);
CREATE TRIGGER IF NOT EXISTS message_words_go AFTER DELETE ON messages
BEGIN
    DELETE FROM message_words WHERE rowid = old.rowid;
END;
";

/// Makes the words index, filling it with the messages of a database from before search, all
/// in one transaction: an index that exists is a complete one.
fn index_words(conn: &mut Connection) -> rusqlite::Result<()> {
    let present: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'message_words'", [], |r| r.get(0))?;
    if present {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(WORDS_INDEX)?;
    {
        let mut messages =
            tx.prepare("SELECT rowid, room, body FROM messages WHERE kind IS NULL AND deleted_by IS NULL")?;
        let mut rows = messages.query([])?;
        while let Some(row) = rows.next()? {
            index_body(&tx, row.get(0)?, &row.get::<_, String>(1)?, &row.get::<_, String>(2)?)?;
        }
    }
    tx.commit()
}

/// The index's term for `room`: every message of the room has it, so a search of one room, or
/// of a reader's rooms, reads only their messages' entries. `§` is no word character, so no
/// word is ever a room term; the name is hex, which the tokenizer keeps in one piece.
fn room_term(room: &str) -> String {
    let mut term = String::from("§");
    for byte in room.bytes() {
        term.push_str(&format!("{byte:02x}"));
    }
    term
}

/// Puts the words of `body` in the index as those of message `row` of `room`, a new one.
fn index_body(tx: &rusqlite::Transaction<'_>, row: i64, room: &str, body: &str) -> rusqlite::Result<()> {
    let found = words(body);
    if !found.is_empty() {
        let indexed = format!("{} {}", room_term(room), found.join(" "));
        tx.prepare_cached("INSERT INTO message_words (rowid, words) VALUES (?1, ?2)")?
            .execute(params![row, indexed])?;
    }
    Ok(())
}

/// Takes the words of message `row` out of the index.
fn unindex(tx: &rusqlite::Transaction<'_>, row: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM message_words WHERE rowid = ?1")?.execute([row]).map(drop)
}

/// An FTS5 query for messages of one of `rooms` with every one of `words`, each term quoted.
fn matching(rooms: &[String], words: &[String]) -> String {
    let quoted = |term: &str| format!("\"{}\"", term.replace('"', "\"\""));
    let rooms: Vec<String> = rooms.iter().map(|room| quoted(&room_term(room))).collect();
    let words = words.iter().map(|word| quoted(word)).collect::<Vec<_>>().join(" AND ");
    format!("({}) AND {words}", rooms.join(" OR "))
}

/// Brings a database made by an earlier release up to [`SCHEMA`].
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |row| row.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn classify(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict
        }
        other => unavailable(other),
    }
}

fn room_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Room> {
    Ok(Room { id: row.get(0)?, private: row.get(1)?, owner: row.get(2)?, direct: row.get(3)?, created_at: row.get(4)? })
}

/// A JSON column's text; values that no longer parse read as absent.
fn from_json_text<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    text.and_then(|text| serde_json::from_str(&text).ok())
}

fn json_text<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(|value| serde_json::to_string(value).expect("JSON values serialize"))
}

fn envelope_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Envelope> {
    Ok(Envelope {
        room: row.get(0)?,
        seq: row.get(1)?,
        id: row.get(2)?,
        from: row.get(3)?,
        ts: row.get(4)?,
        body: row.get(5)?,
        attachments: from_json_text(row.get(6)?),
        reply_to: row.get(7)?,
        data: from_json_text(row.get(8)?),
        mentions: from_json_text(row.get(9)?).unwrap_or_default(),
        kind: row.get::<_, Option<String>>(10)?.and_then(|name| kind_named(&name)).unwrap_or_default(),
        target: row.get(11)?,
        key: row.get(12)?,
        on: row.get(13)?,
        edited_at: row.get(14)?,
        deleted: row.get::<_, Option<String>>(15)?.is_some(),
        deleted_by: row.get(15)?,
    })
}

/// How the `kind` column names an event; NULL for a message.
fn kind_name(kind: MessageKind) -> Option<String> {
    // every message passes here: nothing is serialized for one
    match kind {
        MessageKind::Message => None,
        event => serde_json::to_value(event).ok().and_then(|name| name.as_str().map(str::to_owned)),
    }
}

fn kind_named(name: &str) -> Option<MessageKind> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// Applies stored event `event` to the message it targets (the contract's
/// [`Store::write_batch`]); `row` is the event's rowid.
fn apply_event(tx: &rusqlite::Transaction<'_>, event: &Envelope, row: i64) -> rusqlite::Result<()> {
    let (room, Some(target)) = (&event.room, event.target) else { return Ok(()) };
    const LIVE: &str = "room = ?1 AND seq = ?2 AND kind IS NULL AND deleted_by IS NULL";
    match event.kind {
        MessageKind::Message => {}
        MessageKind::Edit => {
            let edited: Option<i64> = tx
                .prepare_cached(&format!(
                    "UPDATE messages SET body = ?3, edited_at = ?4, edited_seq = ?5
                     WHERE {LIVE} AND coalesce(edited_seq, 0) < ?5 RETURNING rowid"
                ))?
                .query_row(params![room, target, event.body, event.ts, event.seq], |r| r.get(0))
                .optional()?;
            if let Some(edited) = edited {
                unindex(tx, edited)?;
                index_body(tx, edited, room, &event.body)?;
            }
            // an edit that lost the race with a delete keeps no text either
            tx.prepare_cached(&format!(
                "UPDATE messages SET body = '' WHERE rowid = ?3 AND NOT EXISTS (SELECT 1 FROM messages WHERE {LIVE})"
            ))?
            .execute(params![room, target, row])?;
        }
        MessageKind::Delete => {
            let found: Option<(i64, Option<String>)> = tx
                .prepare_cached(&format!("SELECT rowid, attachments FROM messages WHERE {LIVE}"))?
                .query_row(params![room, target], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((deleted, attachments)) = found else { return Ok(()) };
            unindex(tx, deleted)?;
            tx.prepare_cached(
                "UPDATE messages SET body = '', attachments = NULL, data = NULL, mentions = NULL, reply_to = NULL,
                     edited_at = NULL, deleted_by = ?2 WHERE rowid = ?1",
            )?
            .execute(params![deleted, event.from])?;
            tx.prepare_cached("UPDATE messages SET body = '' WHERE room = ?1 AND target = ?2 AND kind = 'edit'")?
                .execute(params![room, target])?;
            tx.prepare_cached("DELETE FROM reactions WHERE room = ?1 AND seq = ?2")?.execute(params![room, target])?;
            tx.prepare_cached("DELETE FROM push_due WHERE msg = ?1")?.execute([deleted])?;
            let shown: Vec<roost_protocol::Attachment> = from_json_text(attachments).unwrap_or_default();
            for attachment in shown {
                // an older message still showing the upload keeps it; else it goes at once
                tx.prepare_cached(
                    "UPDATE media SET referenced_by = coalesce((
                         SELECT max(seq) FROM messages WHERE room = ?1 AND kind IS NULL AND deleted_by IS NULL
                         AND attachments LIKE '%\"media\":\"' || ?3 || '\"%'), referenced_by)
                     WHERE id = ?3 AND referenced_by = ?2",
                )?
                .execute(params![room, target, attachment.media])?;
                tx.prepare_cached("UPDATE media SET room_gone = 1 WHERE id = ?1 AND referenced_by = ?2")?
                    .execute(params![attachment.media, target])?;
            }
        }
        MessageKind::Reaction => match (event.key.as_deref(), event.on) {
            (Some(key), Some(true)) => {
                tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO reactions (room, seq, key, user)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM messages WHERE {LIVE})"
                ))?
                .execute(params![room, target, key, event.from])?;
            }
            (Some(key), Some(false)) => {
                tx.prepare_cached("DELETE FROM reactions WHERE room = ?1 AND seq = ?2 AND key = ?3 AND user = ?4")?
                    .execute(params![room, target, key, event.from])?;
            }
            _ => {}
        },
    }
    Ok(())
}

fn media_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Media> {
    Ok(Media {
        id: row.get(0)?,
        room: row.get(1)?,
        uploader: row.get(2)?,
        content_type: row.get(3)?,
        size: row.get(4)?,
        sha256: row.get(5)?,
        filename: row.get(6)?,
        width: row.get(7)?,
        height: row.get(8)?,
        created_at: row.get(9)?,
        referenced_by: row.get(10)?,
    })
}

const ROOM_COLUMNS: &str = "id, private, owner, direct, created_at";
const MEDIA_COLUMNS: &str =
    "id, room, uploader, content_type, size, sha256, filename, width, height, created_at, referenced_by";
const BOT_COLUMNS: &str = "name, owner, token_id, created_at";
const MESSAGE_COLUMNS: &str = "room, seq, id, sender, ts, body, attachments, reply_to, data, mentions, kind, target, \
     reaction_key, reaction_on, edited_at, deleted_by";
/// What a message or event is stored with; the rest is the store's, set by later events.
const STAMPED_COLUMNS: &str =
    "room, seq, id, sender, ts, body, attachments, reply_to, data, mentions, kind, target, reaction_key, reaction_on";

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash, roost_protocol::now_millis()],
            )
            .map(drop)
        })
        .await
    }

    async fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()
        })
        .await
    }

    async fn user_exists(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
        .await
    }

    async fn put_refresh_token(&self, token_hash: &str, token: &RefreshToken) -> Result<(), StoreError> {
        let (hash, token) = (token_hash.to_owned(), token.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO refresh_tokens (token_hash, user, expires_at, family) VALUES (?1, ?2, ?3, ?4)",
                params![hash, token.user, token.expires_at, token.family],
            )
            .map(drop)
        })
        .await
    }

    async fn use_refresh_token(&self, token_hash: &str) -> Result<Presented, StoreError> {
        let hash = token_hash.to_owned();
        self.with(move |c| {
            c.query_row(
                "UPDATE refresh_tokens SET uses = uses + 1 WHERE token_hash = ?1
                 RETURNING user, coalesce(family, token_hash), expires_at, uses",
                [hash],
                |r| {
                    Ok(Presented::after_uses(
                        RefreshToken { user: r.get(0)?, family: r.get(1)?, expires_at: r.get(2)? },
                        r.get(3)?,
                    ))
                },
            )
            .optional()
            .map(|found| found.unwrap_or(Presented::Unknown))
        })
        .await
    }

    async fn revoke_refresh_family(&self, family: &str, until: i64) -> Result<u64, StoreError> {
        let family = family.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            let revoked =
                tx.execute("DELETE FROM refresh_tokens WHERE coalesce(family, token_hash) = ?1", [&family])?;
            tx.execute(
                "INSERT INTO revoked_refresh_families (family, until) VALUES (?1, ?2)
                 ON CONFLICT (family) DO UPDATE SET until = max(until, ?2)",
                params![family, until],
            )?;
            tx.commit()?;
            Ok(revoked as u64)
        })
        .await
    }

    async fn refresh_family_revoked(&self, family: &str) -> Result<bool, StoreError> {
        let family = family.to_owned();
        self.with(move |c| {
            c.query_row("SELECT 1 FROM revoked_refresh_families WHERE family = ?1", [family], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
        .await
    }

    async fn purge_refresh_tokens(&self, now: i64) -> Result<u64, StoreError> {
        self.with(move |c| {
            c.execute("DELETE FROM revoked_refresh_families WHERE until < ?1", [now])?;
            c.execute("DELETE FROM refresh_tokens WHERE expires_at < ?1", [now]).map(|n| n as u64)
        })
        .await
    }

    async fn create_room(&self, room: &Room) -> Result<(), StoreError> {
        let room = room.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO rooms (id, private, owner, direct, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![room.id, room.private, room.owner, room.direct, room.created_at],
            )?;
            tx.execute("INSERT INTO members (room, user) VALUES (?1, ?2)", params![room.id, room.owner])?;
            tx.commit()
        })
        .await
    }

    async fn room(&self, id: &str) -> Result<Option<Room>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?1"), [id], room_from_row).optional()
        })
        .await
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<Room>, StoreError> {
        let user = user.to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ROOM_COLUMNS} FROM rooms WHERE id IN (SELECT room FROM members WHERE user = ?1) ORDER BY id"
            ))?;
            let rooms = stmt.query_map([user], room_from_row)?.collect();
            rooms
        })
        .await
    }

    async fn public_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Room, Option<i64>)>, StoreError> {
        let (from, until) = (prefix.to_owned(), name_prefix_end(prefix));
        let after = after.unwrap_or_default().to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ROOM_COLUMNS}, (SELECT ts FROM messages m WHERE m.room = rooms.id ORDER BY seq DESC LIMIT 1)
                 FROM rooms WHERE private = 0 AND direct = 0 AND id >= ?1 AND id < ?2 AND id > ?3
                 ORDER BY id LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![from, until, after, limit], |r| Ok((room_from_row(r)?, r.get(5)?)))?;
            rows.collect()
        })
        .await
    }

    async fn delete_room(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            for table in ["members", "receipts", "messages", "reactions"] {
                tx.execute(&format!("DELETE FROM {table} WHERE room = ?1"), [&id])?;
            }
            tx.execute("DELETE FROM rooms WHERE id = ?1", [&id])?;
            tx.execute("UPDATE room_seq SET floor = next WHERE room = ?1", [&id])?;
            tx.execute("UPDATE media SET room_gone = 1 WHERE room = ?1", [&id])?;
            tx.execute("DELETE FROM notification_settings WHERE room = ?1", [&id])?;
            tx.execute("DELETE FROM push_jobs WHERE room = ?1", [&id])?;
            tx.commit()
        })
        .await
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.with(move |c| {
            c.execute("INSERT OR IGNORE INTO members (room, user) VALUES (?1, ?2)", params![room, user]).map(|n| n == 1)
        })
        .await
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.with(move |c| {
            c.execute("DELETE FROM members WHERE room = ?1 AND user = ?2", params![room, user]).map(|n| n == 1)
        })
        .await
    }

    async fn memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT room, user FROM members")?;
            let pairs = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            pairs
        })
        .await
    }

    async fn create_bot(&self, bot: &Bot) -> Result<(), StoreError> {
        let bot = bot.clone();
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO bots ({BOT_COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
                params![bot.name, bot.owner, bot.token_id, bot.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn bots(&self) -> Result<Vec<Bot>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("SELECT {BOT_COLUMNS} FROM bots"))?;
            let bots = stmt.query_map([], bot_from_row)?.collect();
            bots
        })
        .await
    }

    async fn bot(&self, name: &str) -> Result<Option<Bot>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row(&format!("SELECT {BOT_COLUMNS} FROM bots WHERE name = ?1"), [name], bot_from_row).optional()
        })
        .await
    }

    async fn delete_bot(&self, name: &str) -> Result<Option<Bot>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row(&format!("DELETE FROM bots WHERE name = ?1 RETURNING {BOT_COLUMNS}"), [name], bot_from_row)
                .optional()
        })
        .await
    }

    async fn reserve_seq(&self, room: &str, count: i64) -> Result<i64, StoreError> {
        let room = room.to_owned();
        self.with(move |c| {
            let next: i64 = c.query_row(
                "INSERT INTO room_seq (room, next) VALUES (?1, 1 + ?2)
                 ON CONFLICT (room) DO UPDATE SET next = next + ?2 RETURNING next",
                params![room, count],
                |r| r.get(0),
            )?;
            Ok(next - count)
        })
        .await
    }

    async fn return_seq(&self, room: &str, unused: i64, end: i64) -> Result<bool, StoreError> {
        let room = room.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE room_seq SET next = ?2 WHERE room = ?1 AND next = ?3 AND floor <= ?2",
                params![room, unused, end],
            )
            .map(|changed| changed == 1)
        })
        .await
    }

    async fn write_batch(&self, messages: &[Envelope], receipts: &[ReceiptStamped]) -> Result<(), StoreError> {
        let (messages, receipts) = (messages.to_vec(), receipts.to_vec());
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO messages ({STAMPED_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))?;
                // a rowid freed by a deleted message can come back: the new message is the due one
                let mut due = tx.prepare_cached("INSERT OR REPLACE INTO push_due (msg, lease_until) VALUES (?1, ?2)")?;
                let held_until = now_millis() + PUSH_DUE_HOLD_MS;
                for m in &messages {
                    let (attachments, data) = (json_text(&m.attachments), json_text(&m.data));
                    let mentions = json_text(&Some(&m.mentions).filter(|names| !names.is_empty()));
                    let stored = insert.execute(params![
                        m.room,
                        m.seq,
                        m.id,
                        m.from,
                        m.ts,
                        m.body,
                        attachments,
                        m.reply_to,
                        data,
                        mentions,
                        kind_name(m.kind),
                        m.target,
                        m.key,
                        m.on
                    ])?;
                    let row = tx.last_insert_rowid();
                    match stored {
                        1 if m.kind.is_message() => {
                            due.execute([row, held_until])?;
                            index_body(&tx, row, &m.room, &m.body)?;
                        }
                        1 => apply_event(&tx, m, row)?,
                        _ => {}
                    }
                }
                let mut read = tx.prepare_cached(
                    "INSERT INTO receipts (room, user, read_seq, ts) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (room, user) DO UPDATE SET read_seq = max(read_seq, excluded.read_seq), ts = excluded.ts",
                )?;
                for r in &receipts {
                    read.execute(params![r.room, r.from, r.read_seq, r.ts])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn messages(&self, room: &str, page: Page) -> Result<Vec<Envelope>, StoreError> {
        let room = room.to_owned();
        self.with(move |c| {
            const MESSAGES_DOWN: &str = "seq > ?2 AND seq < ?3 AND kind IS NULL ORDER BY seq DESC";
            let (sql, lower, upper, limit) = match page {
                Page::Latest { limit } => (MESSAGES_DOWN, i64::MIN, i64::MAX, limit),
                Page::Before { before, limit } => (MESSAGES_DOWN, i64::MIN, before, limit),
                Page::After { after, before, limit } => {
                    ("seq > ?2 AND seq < ?3 ORDER BY seq ASC", after, before.unwrap_or(i64::MAX), limit)
                }
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ?1
                 AND seq >= (SELECT coalesce(max(floor), 0) FROM room_seq WHERE room = ?1) AND {sql} LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![room, lower, upper, limit], envelope_from_row)?.collect();
            rows
        })
        .await
    }

    async fn message_with_id(&self, room: &str, from: &str, id: &str) -> Result<Option<Envelope>, StoreError> {
        let (room, from, id) = (room.to_owned(), from.to_owned(), id.to_owned());
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ?1 AND sender = ?2 AND id = ?3"
            ))?
            .query_row(params![room, from, id], envelope_from_row)
            .optional()
        })
        .await
    }

    async fn last_seq(&self, room: &str) -> Result<i64, StoreError> {
        let room = room.to_owned();
        self.with(move |c| {
            c.prepare_cached(
                "SELECT coalesce(max(seq), 0) FROM messages WHERE room = ?1
                 AND seq >= (SELECT coalesce(max(floor), 0) FROM room_seq WHERE room = ?1)",
            )?
            .query_row([room], |r| r.get(0))
        })
        .await
    }

    async fn messages_at(&self, room: &str, seqs: &[i64]) -> Result<Vec<Envelope>, StoreError> {
        let (room, mut seqs) = (room.to_owned(), seqs.to_vec());
        seqs.sort_unstable();
        seqs.dedup();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ?1 AND seq = ?2
                 AND seq >= (SELECT coalesce(max(floor), 0) FROM room_seq WHERE room = ?1)"
            ))?;
            let mut found = Vec::new();
            for seq in seqs {
                found.extend(stmt.query_row(params![room, seq], envelope_from_row).optional()?);
            }
            Ok(found)
        })
        .await
    }

    async fn search(&self, scope: SearchScope<'_>, words: &[String], limit: u32) -> Result<Vec<Envelope>, StoreError> {
        let words = words.to_vec();
        const FOUND: &str = "rowid IN (SELECT rowid FROM message_words WHERE message_words MATCH ?1)
             AND seq >= (SELECT coalesce(max(floor), 0) FROM room_seq WHERE room_seq.room = messages.room)";
        match scope {
            SearchScope::Room { room, before } => {
                let (room, before) = (room.to_owned(), before.unwrap_or(i64::MAX));
                self.with(move |c| {
                    let matching = matching(std::slice::from_ref(&room), &words);
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {FOUND} AND room = ?2 AND seq < ?3
                         ORDER BY seq DESC LIMIT ?4"
                    ))?;
                    let rows = stmt.query_map(params![matching, room, before, limit], envelope_from_row)?;
                    rows.collect()
                })
                .await
            }
            SearchScope::RoomsOf { user, before } => {
                let user = user.to_owned();
                // no cursor: below every message's (ts, room, seq)
                let (ts, room, seq) = before.map_or((i64::MAX, String::new(), 0), |b| (b.ts, b.room.clone(), b.seq));
                self.with(move |c| {
                    let rooms: Vec<String> = c
                        .prepare_cached("SELECT room FROM members WHERE user = ?1")?
                        .query_map([&user], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    if rooms.is_empty() {
                        return Ok(Vec::new());
                    }
                    let matching = matching(&rooms, &words);
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {FOUND}
                         AND room IN (SELECT room FROM members WHERE user = ?2) AND (ts, room, seq) < (?3, ?4, ?5)
                         ORDER BY ts DESC, room DESC, seq DESC LIMIT ?6"
                    ))?;
                    let rows = stmt.query_map(params![matching, user, ts, room, seq, limit], envelope_from_row)?;
                    rows.collect()
                })
                .await
            }
        }
    }

    async fn reactions(&self, room: &str, seqs: &[i64], reader: &str) -> Result<Vec<ReactionCount>, StoreError> {
        let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) else { return Ok(Vec::new()) };
        let (room, wanted, reader) =
            (room.to_owned(), seqs.iter().copied().collect::<HashSet<i64>>(), reader.to_owned());
        self.with(move |c| {
            // a page's messages are close together: one range read, the rest left out here
            let mut stmt = c.prepare_cached(
                "SELECT seq, key, count(*), max(user = ?4) FROM reactions WHERE room = ?1 AND seq BETWEEN ?2 AND ?3
                 GROUP BY seq, key ORDER BY seq, min(rowid)",
            )?;
            let rows = stmt.query_map(params![room, first, last, reader], |r| {
                Ok(ReactionCount { seq: r.get(0)?, key: r.get(1)?, count: r.get(2)?, me: r.get(3)? })
            })?;
            rows.filter(|row| row.as_ref().map_or(true, |count| wanted.contains(&count.seq))).collect()
        })
        .await
    }

    async fn last_read(&self, room: &str, user: &str) -> Result<Option<i64>, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.with(move |c| {
            c.query_row("SELECT read_seq FROM receipts WHERE room = ?1 AND user = ?2", params![room, user], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut pruned = 0;
            if let Some(cutoff) = retention.older_than {
                pruned += tx.execute("DELETE FROM messages WHERE ts < ?1", [cutoff])?;
            }
            if let Some(keep) = retention.keep_per_room {
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                pruned += tx.execute(
                    "DELETE FROM messages WHERE rowid IN (
                         SELECT rowid FROM (
                             SELECT rowid, row_number() OVER (PARTITION BY room ORDER BY seq DESC) AS newer
                             FROM messages)
                         WHERE newer > ?1)",
                    [keep],
                )?;
            }
            if pruned > 0 {
                tx.execute(
                    "DELETE FROM reactions WHERE NOT EXISTS
                       (SELECT 1 FROM messages m WHERE m.room = reactions.room AND m.seq = reactions.seq)",
                    [],
                )?;
            }
            tx.commit()?;
            Ok(pruned as u64)
        })
        .await
    }

    async fn put_media(&self, media: &Media) -> Result<(), StoreError> {
        let m = media.clone();
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO media ({MEDIA_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    m.id,
                    m.room,
                    m.uploader,
                    m.content_type,
                    m.size,
                    m.sha256,
                    m.filename,
                    m.width,
                    m.height,
                    m.created_at,
                    m.referenced_by
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn media(&self, id: &str) -> Result<Option<Media>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = ?1 AND room_gone = 0"),
                [id],
                media_from_row,
            )
            .optional()
        })
        .await
    }

    async fn reference_media(&self, id: &str, seq: i64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE media SET referenced_by = max(coalesce(referenced_by, 0), ?2), referenced_at = ?3 WHERE id = ?1",
                params![id, seq, roost_protocol::now_millis()],
            )
            .map(drop)
        })
        .await
    }

    async fn media_bytes_of(&self, uploader: &str) -> Result<u64, StoreError> {
        let uploader = uploader.to_owned();
        self.with(move |c| {
            c.query_row("SELECT coalesce(sum(size), 0) FROM media WHERE uploader = ?1", [uploader], |r| r.get(0))
        })
        .await
    }

    async fn sweepable_media(
        &self,
        unused_before: i64,
        referenced_before: i64,
        limit: u32,
    ) -> Result<Vec<Media>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {MEDIA_COLUMNS} FROM media m WHERE room_gone = 1
                    OR (referenced_by IS NULL AND created_at < ?1)
                    OR (referenced_by IS NOT NULL AND referenced_at < ?2 AND NOT EXISTS
                        (SELECT 1 FROM messages WHERE room = m.room AND seq = m.referenced_by AND deleted_by IS NULL))
                 LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![unused_before, referenced_before, limit], media_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn delete_media(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| c.execute("DELETE FROM media WHERE id = ?1", [id]).map(|n| n == 1)).await
    }

    async fn put_push_device(&self, device: &PushDevice) -> Result<(), StoreError> {
        let device = device.clone();
        let target = serde_json::to_string(&device.target).expect("push targets serialize");
        self.with(move |c| {
            c.execute(
                "INSERT INTO push_devices (id, user, device, target, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user, device) DO UPDATE SET id = ?1, target = ?4, created_at = ?5",
                params![device.id, device.user, device.device, target, device.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn push_devices_of(&self, user: &str) -> Result<Vec<PushDevice>, StoreError> {
        let user = user.to_owned();
        self.with(move |c| {
            let mut stmt =
                c.prepare(&format!("SELECT {PUSH_DEVICE_COLUMNS} FROM push_devices WHERE user = ?1 ORDER BY device"))?;
            let rows = stmt.query_map([user], push_device_from_row)?;
            rows.filter_map(Result::transpose).collect()
        })
        .await
    }

    async fn delete_push_device(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.with(move |c| {
            let tx = c.transaction()?;
            let deleted = tx.execute("DELETE FROM push_devices WHERE user = ?1 AND id = ?2", params![user, id])? == 1;
            tx.execute("DELETE FROM push_jobs WHERE device = ?1", [id])?;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    async fn delete_push_devices_of(&self, user: &str) -> Result<u64, StoreError> {
        let user = user.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM push_jobs WHERE user = ?1", [&user])?;
            let deleted = tx.execute("DELETE FROM push_devices WHERE user = ?1", [&user])?;
            tx.commit()?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn push_device(&self, id: &str) -> Result<Option<PushDevice>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {PUSH_DEVICE_COLUMNS} FROM push_devices WHERE id = ?1"),
                [id],
                push_device_from_row,
            )
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    async fn drop_push_device(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM push_devices WHERE id = ?1", [&id])?;
            tx.execute("DELETE FROM push_jobs WHERE device = ?1", [&id])?;
            tx.commit()
        })
        .await
    }

    async fn claim_push_due(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<Envelope>, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut claimed: Vec<i64> = tx
                .prepare_cached(
                    "UPDATE push_due SET lease_until = ?2 WHERE msg IN
                       (SELECT msg FROM push_due WHERE lease_until <= ?1 ORDER BY msg LIMIT ?3)
                     RETURNING msg",
                )?
                .query_map(params![now, lease_until, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            claimed.sort_unstable();
            let mut messages = Vec::with_capacity(claimed.len());
            {
                let mut read =
                    tx.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid = ?1"))?;
                let mut gone = tx.prepare_cached("DELETE FROM push_due WHERE msg = ?1")?;
                for msg in claimed {
                    match read.query_row([msg], envelope_from_row).optional()? {
                        Some(message) => messages.push(message),
                        // pruned or its room deleted before it was planned: nothing to push
                        None => drop(gone.execute([msg])?),
                    }
                }
            }
            tx.commit()?;
            Ok(messages)
        })
        .await
    }

    async fn push_planned(&self, messages: &[(String, i64)]) -> Result<(), StoreError> {
        let mut messages = messages.to_vec();
        messages.sort_unstable();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                // one statement per run of consecutive numbers of a room: a batch is mostly runs
                let mut planned = tx.prepare_cached(
                    "DELETE FROM push_due WHERE msg IN
                       (SELECT rowid FROM messages WHERE room = ?1 AND seq BETWEEN ?2 AND ?3)",
                )?;
                let mut rest = messages.as_slice();
                while let Some((room, first)) = rest.first() {
                    let run = rest.iter().zip(*first..).take_while(|((r, seq), next)| r == room && seq == next).count();
                    planned.execute(params![room, first, rest[run - 1].1])?;
                    rest = &rest[run..];
                }
            }
            tx.commit()
        })
        .await
    }

    async fn queue_push(&self, job: &PushJob) -> Result<(), StoreError> {
        let job = job.clone();
        self.with(move |c| {
            c.prepare_cached(
                "INSERT INTO push_jobs (device, room, user, seq, sender, ts, preview, urgent, not_before, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (device, room) DO UPDATE SET seq = excluded.seq, sender = excluded.sender,
                   ts = excluded.ts, preview = excluded.preview, urgent = max(urgent, excluded.urgent),
                   expires_at = excluded.expires_at
                 WHERE excluded.seq > push_jobs.seq",
            )?
            .execute(params![
                job.device,
                job.room,
                job.user,
                job.seq,
                job.from,
                job.ts,
                job.preview,
                job.urgent,
                job.not_before,
                job.expires_at
            ])
            .map(drop)
        })
        .await
    }

    async fn claim_pushes(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<PushJob>, StoreError> {
        self.with(move |c| {
            let mut claim = c.prepare_cached(
                "UPDATE push_jobs SET lease_until = ?2 WHERE rowid IN
                   (SELECT rowid FROM push_jobs WHERE not_before <= ?1 AND lease_until <= ?1
                    ORDER BY not_before LIMIT ?3)
                 RETURNING device, room, user, seq, sender, ts, preview, urgent, not_before, expires_at, attempts",
            )?;
            let claimed = claim
                .query_map(params![now, lease_until, limit], |r| {
                    Ok(PushJob {
                        device: r.get(0)?,
                        room: r.get(1)?,
                        user: r.get(2)?,
                        seq: r.get(3)?,
                        from: r.get(4)?,
                        ts: r.get(5)?,
                        preview: r.get(6)?,
                        urgent: r.get(7)?,
                        not_before: r.get(8)?,
                        expires_at: r.get(9)?,
                        attempts: r.get(10)?,
                    })
                })?
                .collect();
            claimed
        })
        .await
    }

    async fn finish_push(&self, device: &str, room: &str, seq: i64) -> Result<(), StoreError> {
        let (device, room) = (device.to_owned(), room.to_owned());
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM push_jobs WHERE device = ?1 AND room = ?2 AND seq <= ?3",
                params![device, room, seq],
            )?;
            tx.execute("UPDATE push_jobs SET lease_until = 0 WHERE device = ?1 AND room = ?2", params![device, room])?;
            tx.commit()
        })
        .await
    }

    async fn retry_push(&self, device: &str, room: &str, not_before: i64) -> Result<(), StoreError> {
        let (device, room) = (device.to_owned(), room.to_owned());
        self.with(move |c| {
            c.execute(
                "UPDATE push_jobs SET not_before = ?3, lease_until = 0, attempts = attempts + 1
                 WHERE device = ?1 AND room = ?2",
                params![device, room, not_before],
            )
            .map(drop)
        })
        .await
    }

    async fn push_queue_depth(&self) -> Result<u64, StoreError> {
        self.with(|c| c.query_row("SELECT count(*) FROM push_jobs", [], |r| r.get(0))).await
    }

    async fn unread(&self, user: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let user = user.to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT mb.room, (SELECT count(*) FROM (SELECT 1 FROM messages m
                     WHERE m.room = mb.room AND m.seq > coalesce(r.read_seq, 0) AND m.sender != mb.user
                     AND m.kind IS NULL AND m.deleted_by IS NULL LIMIT ?2))
                 FROM members mb LEFT JOIN receipts r ON r.room = mb.room AND r.user = mb.user
                 WHERE mb.user = ?1",
            )?;
            let rows =
                stmt.query_map(params![user, UNREAD_CAP], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            rows.filter(|row| !matches!(row, Ok((_, 0)))).collect()
        })
        .await
    }

    async fn set_notifications(&self, room: &str, user: &str, setting: &Notifications) -> Result<(), StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        let setting = serde_json::to_string(setting).expect("settings serialize");
        self.with(move |c| {
            c.execute(
                "INSERT INTO notification_settings (room, user, setting) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room, user) DO UPDATE SET setting = ?3",
                params![room, user, setting],
            )
            .map(drop)
        })
        .await
    }

    async fn notifications(&self, room: &str, user: &str) -> Result<Option<Notifications>, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.with(move |c| {
            c.query_row(
                "SELECT setting FROM notification_settings WHERE room = ?1 AND user = ?2",
                params![room, user],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(from_json_text)
        })
        .await
    }

    async fn set_presence(&self, user: &str, presence: &PresenceAggregate) -> Result<(), StoreError> {
        let (user, presence) = (user.to_owned(), presence.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO presence (user, online, devices, last_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user) DO UPDATE SET online = ?2, devices = ?3, last_seen = ?4",
                params![user, presence.status == PresenceStatus::Online, presence.devices, presence.last_seen],
            )
            .map(drop)
        })
        .await
    }

    async fn presence(&self, user: &str) -> Result<Option<PresenceAggregate>, StoreError> {
        let user = user.to_owned();
        self.with(move |c| {
            c.query_row("SELECT online, devices, last_seen FROM presence WHERE user = ?1", [user], |r| {
                let online: bool = r.get(0)?;
                Ok(PresenceAggregate {
                    status: if online { PresenceStatus::Online } else { PresenceStatus::Offline },
                    devices: r.get(1)?,
                    last_seen: r.get(2)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn reset_presence(&self) -> Result<(), StoreError> {
        self.with(|c| c.execute("UPDATE presence SET online = 0, devices = 0 WHERE online <> 0", []).map(drop)).await
    }

    async fn append_outbox(&self, directive: &Directive) -> Result<i64, StoreError> {
        let directive = serde_json::to_string(directive).expect("directives serialize");
        self.with(move |c| {
            c.query_row("INSERT INTO outbox (directive) VALUES (?1) RETURNING position", [directive], |r| r.get(0))
        })
        .await
    }

    async fn outbox_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Directive)>, StoreError> {
        let rows: Vec<(i64, String)> = self
            .with(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT position, directive FROM outbox WHERE position > ?1 ORDER BY position LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
                rows
            })
            .await?;
        rows.into_iter()
            .map(|(position, text)| {
                let directive = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Unavailable(format!("outbox entry {position}: {e}")))?;
                Ok((position, directive))
            })
            .collect()
    }

    async fn outbox_head(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT max((SELECT coalesce(max(position), 0) FROM outbox),
                            (SELECT coalesce(max(position), 0) FROM outbox_followers))",
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn set_outbox_applied(&self, node: &str, position: i64) -> Result<(), StoreError> {
        let node = node.to_owned();
        let now = now_millis();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO outbox_followers (node, position, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node) DO UPDATE SET position = max(position, ?2), at = ?3",
                params![node, position, now],
            )?;
            tx.execute(
                "DELETE FROM outbox WHERE position <= (SELECT min(position) FROM outbox_followers WHERE at >= ?1)",
                [now - OUTBOX_FOLLOWER_KEEP_MS],
            )?;
            tx.commit()
        })
        .await
    }

    async fn outbox_applied(&self, live_since: i64) -> Result<i64, StoreError> {
        self.with(move |c| {
            c.query_row("SELECT coalesce(min(position), 0) FROM outbox_followers WHERE at >= ?1", [live_since], |r| {
                r.get(0)
            })
        })
        .await
    }

    async fn hold_lease(&self, job: &str, holder: &str, until: i64) -> Result<bool, StoreError> {
        let (job, holder, now) = (job.to_owned(), holder.to_owned(), now_millis());
        self.with(move |c| {
            c.execute(
                "INSERT INTO leases (job, holder, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job) DO UPDATE SET holder = ?2, until = ?3 WHERE holder = ?2 OR until < ?4",
                params![job, holder, until, now],
            )
            .map(|changed| changed == 1)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

const PUSH_DEVICE_COLUMNS: &str = "id, user, device, target, created_at";

/// The registration in the row; `None` when its target no longer parses (no device to push to).
fn push_device_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<PushDevice>> {
    let Some(target) = from_json_text(Some(row.get::<_, String>(3)?)) else {
        return Ok(None);
    };
    Ok(Some(PushDevice { id: row.get(0)?, user: row.get(1)?, device: row.get(2)?, target, created_at: row.get(4)? }))
}

fn bot_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Bot> {
    Ok(Bot { name: row.get(0)?, owner: row.get(1)?, token_id: row.get(2)?, created_at: row.get(3)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_from_before_message_data_gains_the_column_and_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE messages (room TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
                    sender TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL, attachments TEXT,
                    reply_to INTEGER, PRIMARY KEY (room, seq));
                 INSERT INTO messages VALUES ('lobby', 1, 'm1', 'alice', 5, 'from before', NULL, NULL);",
            )
            .unwrap();

        let store = SqliteStore::open(&path).unwrap();
        let reading = serde_json::json!({"celsius": 21.4});
        let newer = Envelope {
            id: "m2".into(),
            room: "lobby".into(),
            seq: 2,
            from: "sensor".into(),
            ts: 6,
            body: "21.4 C".into(),
            attachments: None,
            reply_to: None,
            data: reading.as_object().cloned(),
            mentions: vec!["bob".into()],
            ..Envelope::default()
        };
        store.write_batch(std::slice::from_ref(&newer), &[]).await.unwrap();
        let stored = store.messages("lobby", Page::Latest { limit: 5 }).await.unwrap();
        assert_eq!(
            stored.iter().map(|m| (m.body.as_str(), m.data.is_some())).collect::<Vec<_>>(),
            [("21.4 C", true), ("from before", false)]
        );
        assert_eq!(stored[0], newer);
        drop(store);
        SqliteStore::open(&path).expect("opening an up-to-date database again changes nothing");
    }

    #[tokio::test]
    async fn refresh_tokens_and_counters_from_before_families_and_floors_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE refresh_tokens (token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, expires_at INTEGER NOT NULL);
                 INSERT INTO refresh_tokens VALUES ('old', 'alice', 99);
                 CREATE TABLE room_seq (room TEXT PRIMARY KEY, next INTEGER NOT NULL);
                 INSERT INTO room_seq VALUES ('lobby', 1001);",
            )
            .unwrap();

        let store = SqliteStore::open(&path).unwrap();
        let old = RefreshToken { user: "alice".into(), family: "old".into(), expires_at: 99 };
        assert_eq!(store.use_refresh_token("old").await.unwrap(), Presented::First(old), "its own family");
        assert_eq!(store.revoke_refresh_family("old", 99).await.unwrap(), 1);
        assert_eq!(store.reserve_seq("lobby", 10).await.unwrap(), 1001);
        drop(store);
        SqliteStore::open(&path).expect("opening an up-to-date database again changes nothing");
    }
}
