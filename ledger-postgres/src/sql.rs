//! Statement texts of one store, built once from the validated table name.

use crate::listen::CHANNEL;

/// PostgreSQL truncates identifiers to 63 bytes.
const MAX_IDENT: usize = 63;

/// The names of a store's objects. Each is `{table}_{suffix}` when that fits in 63 bytes, else a
/// prefix of the table name, a hash of the whole name and the suffix, so that two long table
/// names never share derived names.
pub struct Names {
    pub table: String,
    pub ids: String,
    pub streams: String,
    pub feed: String,
    pub feed_head: String,
    pub cursors: String,
    /// The full-text index.
    pub fts_index: String,
}

/// FNV-1a: stable across releases and platforms (the names it makes are stored in databases).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn derived(prefix: &str, table: &str, suffix: &str) -> String {
    let plain = format!("{prefix}{table}_{suffix}");
    if plain.len() <= MAX_IDENT {
        return plain;
    }
    // Table names are ASCII (validated), so byte slicing is safe.
    let keep = MAX_IDENT - prefix.len() - suffix.len() - 10;
    format!("{prefix}{}_{:08x}_{suffix}", &table[..keep], fnv1a(table))
}

impl Names {
    pub fn new(table: &str) -> Self {
        Names {
            table: table.to_owned(),
            ids: derived("", table, "ids"),
            streams: derived("", table, "streams"),
            feed: derived("", table, "feed"),
            feed_head: derived("", table, "feed_head"),
            cursors: derived("", table, "cursors"),
            fts_index: derived("", table, "fts"),
        }
    }

    /// `sql` with `{t}`, `{ids}`, `{streams}`, `{feed}`, `{feed_head}`, `{cursors}` filled in.
    pub fn fill(&self, sql: &str) -> String {
        sql.replace("{t}", &self.table)
            .replace("{ids}", &self.ids)
            .replace("{streams}", &self.streams)
            .replace("{feed_head}", &self.feed_head)
            .replace("{feed}", &self.feed)
            .replace("{cursors}", &self.cursors)
    }
}

/// Every fixed statement a store runs, with its table names filled in.
pub struct Statements {
    pub names: Names,
    pub lock_stream: String,
    pub dedup_lookup: String,
    pub allocate_ids: String,
    pub insert_entries: String,
    /// The one-statement append when `expected` admits a new stream (version 0).
    pub append_admitting_new: String,
    /// The one-statement append when `expected` requires an existing stream.
    pub append_existing: String,
    pub insert_entries_with_feed: String,
    pub record_feed: String,
    pub lock_feed: String,
    pub read_columns: String,
    pub count: String,
    pub stat: String,
    pub list_streams: String,
    pub set_tags: String,
    pub replace_tags: String,
    pub replace_annotations: String,
    pub entry_exists: String,
    pub held: String,
    pub insert_replicated: String,
    pub raise_stream_version: String,
    pub raise_ids: String,
    pub set_annotations: String,
    pub trim: String,
    pub drop_stream_lock: String,
    pub rename_entries: String,
    pub rename_stream: String,
    pub read_feed: String,
    pub create_fts_index: String,
    pub fts_index_valid: String,
    pub drop_fts_index: String,
    pub get_cursor: String,
    pub set_cursor: String,
}

impl Statements {
    pub fn new(names: Names) -> Self {
        let t = names.table.as_str();
        let (ids, streams, feed, feed_head, cursors) = (
            &names.ids,
            &names.streams,
            &names.feed,
            &names.feed_head,
            &names.cursors,
        );
        // Entries of one append, as parallel arrays: one round trip whatever the batch size.
        // `id` is an expression: explicit ids ($13) when the change feed needs them up front,
        // else `nextval` in ordinality order (PostgreSQL evaluates volatile target expressions
        // after ORDER BY), so ascending versions get ascending ids either way.
        let insert_entries = |id: &str| {
            format!(
                r#"rows AS (
                INSERT INTO "{t}" (id, stream, version, payload, payload_exact, order_key,
                                   dedup_key, schema_version, metadata, tags, created_at)
                SELECT {id}, $1, u.version, u.payload::jsonb, u.payload_exact, u.order_key,
                       u.dedup_key, u.schema_version, u.metadata::jsonb, u.tags::jsonb, $2
                FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                            $8::bigint[], $9::text[], $10::text[]) WITH ORDINALITY
                     AS u(version, payload, payload_exact, order_key, dedup_key,
                          schema_version, metadata, tags, ord)
                ORDER BY u.ord
                RETURNING id, version
            ), stream_version AS (
                UPDATE "{streams}" SET version = $11 WHERE stream = $1
            )"#
            )
        };
        // The feed position is taken last, just before COMMIT, from a single counter row whose
        // lock is held until COMMIT: positions are assigned in commit order (see feed.rs).
        let feed_record = |stream: &str, mutation: &str| {
            format!(
                r#"head AS (
                    UPDATE "{feed_head}" SET position = position + 1 RETURNING position
                ), feed AS (
                    INSERT INTO "{feed}" (position, stream, mutation)
                    SELECT position, {stream}, {mutation} FROM head
                )"#
            )
        };
        // A whole append in one autocommitted statement: bump the stream's version under its row
        // lock if `expected` admits the current one ($13 kind, $14 exact version), then insert
        // the entries at versions after the previous one. No row back means "decide the slow
        // way": `expected` did not hold (a conflict, or a retry of stored duplicates). A taken
        // dedup key aborts the statement with a unique violation, which also means that.
        let admits = |v: &str| {
            format!(
                "CASE $13::int WHEN 0 THEN TRUE WHEN 1 THEN {v} = 0 WHEN 2 THEN {v} > 0 \
                 ELSE {v} = $14 END"
            )
        };
        let one_statement = |bump: String| {
            format!(
                r#"WITH bumped AS ({bump}), rows AS (
                INSERT INTO "{t}" (id, stream, version, payload, payload_exact, order_key,
                                   dedup_key, schema_version, metadata, tags, created_at)
                SELECT nextval('"{ids}"'), $1, b.previous + u.version, u.payload::jsonb,
                       u.payload_exact, u.order_key, u.dedup_key, u.schema_version,
                       u.metadata::jsonb, u.tags::jsonb, $2
                FROM bumped b CROSS JOIN unnest($3::bigint[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[])
                     WITH ORDINALITY AS u(version, payload, payload_exact, order_key, dedup_key,
                                          schema_version, metadata, tags, ord)
                ORDER BY u.ord
                RETURNING id, version
            )
            SELECT rows.id, rows.version FROM rows
            CROSS JOIN (SELECT pg_notify('{CHANNEL}', $12)) AS notified"#
            )
        };
        let append_admitting_new = one_statement(format!(
            r#"INSERT INTO "{streams}" AS s (stream, version) VALUES ($1, $11)
               ON CONFLICT (stream) DO UPDATE SET version = s.version + $11
               WHERE {}
               RETURNING s.version - $11 AS previous"#,
            admits("s.version")
        ));
        let append_existing = one_statement(format!(
            r#"UPDATE "{streams}" AS s SET version = s.version + $11
               WHERE s.stream = $1 AND {}
               RETURNING s.version - $11 AS previous"#,
            admits("s.version")
        ));
        Statements {
            append_admitting_new,
            append_existing,
            lock_stream: format!(
                r#"INSERT INTO "{streams}" (stream, version) VALUES ($1, 0)
                   ON CONFLICT (stream) DO UPDATE SET version = "{streams}".version
                   RETURNING version"#
            ),
            dedup_lookup: format!(
                r#"SELECT dedup_key, id FROM "{t}" WHERE stream = $1 AND dedup_key = ANY($2)"#
            ),
            allocate_ids: format!(r#"SELECT nextval('"{ids}"') FROM generate_series(1, $1)"#),
            insert_entries_with_feed: format!(
                "WITH {}, {} SELECT pg_notify('{CHANNEL}', $12)",
                insert_entries("($13::bigint[])[u.ord]"),
                feed_record("$1", "$14")
            ),
            insert_entries: format!(
                "WITH {} SELECT rows.id, rows.version FROM rows \
                 CROSS JOIN (SELECT pg_notify('{CHANNEL}', $12)) AS notified",
                insert_entries(&format!("nextval('\"{ids}\"')"))
            ),
            lock_feed: format!(r#"SELECT position FROM "{feed_head}" FOR UPDATE"#),
            record_feed: format!(
                "WITH {} SELECT pg_notify('{CHANNEL}', $3)",
                feed_record("$1", "$2")
            ),
            read_columns: format!(
                r#"SELECT id, stream, version, payload, order_key, dedup_key, schema_version,
                   metadata, tags, annotations, created_at, updated_at, payload_exact
                   FROM "{t}" WHERE "#
            ),
            count: format!(r#"SELECT COUNT(*) FROM "{t}" WHERE stream = $1"#),
            stat: format!(
                r#"SELECT COUNT(*), MIN(id), MAX(id),
                   (SELECT version FROM "{streams}" WHERE stream = $1)
                   FROM "{t}" WHERE stream = $1"#
            ),
            list_streams: format!(
                r#"SELECT s.stream FROM "{streams}" s
                   WHERE s.stream > $1 AND EXISTS (SELECT 1 FROM "{t}" e WHERE e.stream = s.stream)
                   ORDER BY s.stream LIMIT $2"#
            ),
            // Both match nothing when nothing would change (see `entry_exists`).
            set_tags: format!(
                r#"UPDATE "{t}" SET tags = $1::jsonb, updated_at = $2
                   WHERE stream = $3 AND id = $4 AND tags IS DISTINCT FROM $1::jsonb
                   RETURNING version"#
            ),
            // One statement: merge and delete happen atomically, whoever else is writing.
            set_annotations: format!(
                r#"UPDATE "{t}" SET annotations = (annotations || $1::jsonb) - $2::text[],
                   updated_at = $3
                   WHERE stream = $4 AND id = $5
                   AND (annotations || $1::jsonb) - $2::text[] IS DISTINCT FROM annotations
                   RETURNING version, annotations"#
            ),
            replace_tags: format!(
                r#"UPDATE "{t}" SET tags = $1::jsonb, updated_at = $2 WHERE stream = $3 AND id = $4"#
            ),
            replace_annotations: format!(
                r#"UPDATE "{t}" SET annotations = $1::jsonb, updated_at = $2
                   WHERE stream = $3 AND id = $4"#
            ),
            held: format!(r#"SELECT id, stream, version FROM "{t}" WHERE id = ANY($1)"#),
            insert_replicated: format!(
                r#"INSERT INTO "{t}" (id, stream, version, payload, payload_exact, order_key,
                                   dedup_key, schema_version, metadata, tags, annotations,
                                   created_at, updated_at)
                SELECT u.id, u.stream, u.version, u.payload::jsonb, u.payload_exact, u.order_key,
                       u.dedup_key, u.schema_version, u.metadata::jsonb, u.tags::jsonb,
                       u.annotations::jsonb, u.created_at, u.updated_at
                FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                            $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[],
                            $11::text[], $12::timestamptz[], $13::timestamptz[])
                     AS u(id, stream, version, payload, payload_exact, order_key, dedup_key,
                          schema_version, metadata, tags, annotations, created_at, updated_at)"#
            ),
            raise_stream_version: format!(
                r#"INSERT INTO "{streams}" AS s (stream, version) VALUES ($1, $2)
                   ON CONFLICT (stream) DO UPDATE SET version = GREATEST(s.version, excluded.version)"#
            ),
            raise_ids: format!(
                r#"SELECT setval('"{ids}"', GREATEST($1, (SELECT last_value FROM "{ids}")))"#
            ),
            entry_exists: format!(r#"SELECT 1 FROM "{t}" WHERE stream = $1 AND id = $2"#),
            trim: format!(r#"DELETE FROM "{t}" WHERE stream = $1 AND id <= $2"#),
            drop_stream_lock: format!(
                r#"DELETE FROM "{streams}" WHERE stream = $1 AND version = 0"#
            ),
            rename_entries: format!(r#"UPDATE "{t}" SET stream = $1 WHERE stream = $2"#),
            rename_stream: format!(r#"UPDATE "{streams}" SET stream = $1 WHERE stream = $2"#),
            read_feed: format!(
                r#"SELECT position, stream, mutation FROM "{feed}"
                   WHERE position > $1 ORDER BY position LIMIT $2"#
            ),
            // CONCURRENTLY: building the index does not block writers.
            create_fts_index: format!(
                r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "{}" ON "{t}"
                   USING GIN (to_tsvector('simple', payload))"#,
                names.fts_index
            ),
            fts_index_valid: "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)"
                .to_owned(),
            drop_fts_index: format!(r#"DROP INDEX CONCURRENTLY IF EXISTS "{}""#, names.fts_index),
            get_cursor: format!(r#"SELECT position FROM "{cursors}" WHERE name = $1"#),
            set_cursor: format!(
                r#"INSERT INTO "{cursors}" (name, position) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE
                   SET position = GREATEST("{cursors}".position, excluded.position)"#
            ),
            names,
        }
    }
}
