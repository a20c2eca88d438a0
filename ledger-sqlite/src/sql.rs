//! Statement texts of one store, built once from the validated table name.

/// The fixed texts of an append sent as one command (`append::OneCommand`), each ending where
/// the stream is bound.
pub struct OneCommandSql {
    /// `BEGIN IMMEDIATE` and the entries' `INSERT … SELECT`.
    pub insert_entries: String,
    /// Opens the stream's current version, 0 for a new stream (closed by `), 0)`).
    pub version_of: String,
    /// The feed record's `INSERT … SELECT`.
    pub insert_feed: String,
    /// The stream row's upsert.
    pub raise_version: String,
}

/// Every fixed statement a store runs, with its table names filled in.
pub struct Statements {
    pub table: String,
    pub stream_version: String,
    pub upsert_stream_version_prefix: String,
    pub upsert_stream_version_suffix: String,
    pub insert_entry_columns: String,
    pub insert_feed: String,
    pub insert_feed_prefix: String,
    pub one_command: OneCommandSql,
    pub read_columns: String,
    pub count: String,
    pub stat: String,
    pub list_streams: String,
    pub set_tags: String,
    pub replace_tags: String,
    pub entry_exists: String,
    pub held_prefix: String,
    pub insert_replicated_columns: String,
    pub raise_stream_version: String,
    pub get_annotations: String,
    pub set_annotations: String,
    pub trim: String,
    pub rename_entries: String,
    pub rename_stream: String,
    pub read_feed: String,
    pub feed_head: String,
    pub entries_by_ids: String,
    pub get_cursor: String,
    pub set_cursor: String,
}

impl Statements {
    pub fn new(t: &str) -> Self {
        let insert_feed_columns =
            format!(r#"INSERT INTO "{t}_feed" (stream, mutation, ids, version, recorded_at) "#);
        // Appends bind the feed record's values inline in their multi-statement command.
        let insert_feed_prefix = format!("{insert_feed_columns}VALUES (");
        // See `read::Rest` for why all but four columns come as one JSON array.
        let read_columns = format!(
            r#"SELECT id, version, payload, created_at,
               '[' || json_quote(stream) || ',' || json_quote(order_key) || ','
                   || json_quote(dedup_key) || ',' || json_quote(schema_version) || ','
                   || metadata || ',' || tags || ',' || annotations || ','
                   || json_quote(updated_at) || ']'
               FROM "{t}" WHERE "#
        );
        Statements {
            table: t.to_owned(),
            stream_version: format!(r#"SELECT version FROM "{t}_streams" WHERE stream = ?"#),
            upsert_stream_version_prefix: format!(
                r#"INSERT INTO "{t}_streams" (stream, version) VALUES ("#
            ),
            upsert_stream_version_suffix:
                ") ON CONFLICT (stream) DO UPDATE SET version = excluded.version".to_owned(),
            insert_entry_columns: format!(
                r#"INSERT INTO "{t}" (id, stream, version, payload, order_key, dedup_key,
                   schema_version, metadata, tags, created_at) "#
            ),
            insert_feed: format!("{insert_feed_prefix}?, ?, ?, ?, ?)"),
            insert_feed_prefix,
            one_command: OneCommandSql {
                insert_entries: format!(
                    r#"BEGIN IMMEDIATE; INSERT INTO "{t}" (stream, version, payload, order_key,
                       dedup_key, schema_version, metadata, tags, created_at) SELECT "#
                ),
                version_of: format!(
                    r#"COALESCE((SELECT version FROM "{t}_streams" WHERE stream = "#
                ),
                insert_feed: format!("{insert_feed_columns}SELECT "),
                raise_version: format!(
                    r#"INSERT INTO "{t}_streams" AS s (stream, version) SELECT "#
                ),
            },
            read_columns: read_columns.clone(),
            count: format!(r#"SELECT COUNT(*) FROM "{t}" WHERE stream = ?"#),
            stat: format!(
                r#"SELECT COUNT(*), MIN(id), MAX(id),
                   (SELECT version FROM "{t}_streams" WHERE stream = ?1)
                   FROM "{t}" WHERE stream = ?1"#
            ),
            list_streams: format!(
                r#"SELECT s.stream FROM "{t}_streams" s
                   WHERE s.stream > ? AND EXISTS (SELECT 1 FROM "{t}" e WHERE e.stream = s.stream)
                   ORDER BY s.stream LIMIT ?"#
            ),
            // Matches nothing when the tags are already these (see `entry_exists`).
            set_tags: format!(
                r#"UPDATE "{t}" SET tags = ?1, updated_at = ?2
                   WHERE stream = ?3 AND id = ?4 AND tags IS NOT ?1 RETURNING version"#
            ),
            replace_tags: format!(
                r#"UPDATE "{t}" SET tags = ?, updated_at = ? WHERE stream = ? AND id = ?"#
            ),
            held_prefix: format!(r#"SELECT id, stream, version FROM "{t}" WHERE id IN ("#),
            insert_replicated_columns: format!(
                r#"INSERT INTO "{t}" (id, stream, version, payload, order_key, dedup_key,
                   schema_version, metadata, tags, annotations, created_at, updated_at) "#
            ),
            raise_stream_version: format!(
                r#"INSERT INTO "{t}_streams" (stream, version) VALUES (?, ?)
                   ON CONFLICT (stream) DO UPDATE SET version = MAX(version, excluded.version)"#
            ),
            entry_exists: format!(r#"SELECT 1 FROM "{t}" WHERE stream = ? AND id = ?"#),
            get_annotations: format!(
                r#"SELECT annotations, version FROM "{t}" WHERE stream = ? AND id = ?"#
            ),
            set_annotations: format!(
                r#"UPDATE "{t}" SET annotations = ?, updated_at = ? WHERE stream = ? AND id = ?"#
            ),
            trim: format!(r#"DELETE FROM "{t}" WHERE stream = ? AND id <= ?"#),
            rename_entries: format!(r#"UPDATE "{t}" SET stream = ? WHERE stream = ?"#),
            rename_stream: format!(r#"UPDATE "{t}_streams" SET stream = ? WHERE stream = ?"#),
            read_feed: format!(
                r#"SELECT position, stream, mutation, ids, version FROM "{t}_feed"
                   WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"#
            ),
            feed_head: format!(r#"SELECT max(position) FROM "{t}_feed""#),
            entries_by_ids: format!("{read_columns}id IN (SELECT value FROM json_each(?))"),
            get_cursor: format!(r#"SELECT position FROM "{t}_cursors" WHERE name = ?"#),
            set_cursor: format!(
                r#"INSERT INTO "{t}_cursors" (name, position) VALUES (?, ?)
                   ON CONFLICT (name) DO UPDATE SET position = MAX(position, excluded.position)"#
            ),
        }
    }
}
