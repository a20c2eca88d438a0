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
    /// The sequence feed positions are taken from.
    pub feed_pos: String,
    /// The counter row that positions were taken from before schema version 2.
    pub feed_head: String,
    pub cursors: String,
    /// The first key of the shared advisory locks that feed writers hold (see feed.rs): a hash
    /// of the table name, so that stores in one database rarely share it (sharing would only
    /// make their readers wait for each other's writers, never skip a record).
    pub lock_key: i32,
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
            feed_pos: derived("", table, "feed_pos"),
            feed_head: derived("", table, "feed_head"),
            cursors: derived("", table, "cursors"),
            lock_key: (fnv1a(table) & 0x7fff_ffff) as i32,
            fts_index: derived("", table, "fts"),
        }
    }

    /// `sql` with `{t}`, `{ids}`, `{streams}`, `{feed}`, `{feed_pos}`, `{feed_head}`,
    /// `{cursors}` filled in.
    pub fn fill(&self, sql: &str) -> String {
        sql.replace("{t}", &self.table)
            .replace("{ids}", &self.ids)
            .replace("{streams}", &self.streams)
            .replace("{feed_head}", &self.feed_head)
            .replace("{feed_pos}", &self.feed_pos)
            .replace("{feed}", &self.feed)
            .replace("{cursors}", &self.cursors)
    }
}

/// A one-statement append, in two shapes that bind the same parameters.
pub struct OneStatement {
    /// For any number of entries: the columns bound as arrays ($3..=$10).
    pub batch: String,
    /// For one entry: the columns bound as scalars.
    pub single: String,
}

/// Every fixed statement a store runs, with its table names filled in.
pub struct Statements {
    pub names: Names,
    pub lock_stream: String,
    pub dedup_lookup: String,
    /// Inserts an append's entries (and, with the change feed, its feed record).
    pub insert_entries: String,
    /// The one-statement append when `expected` admits a new stream (version 0).
    pub append_admitting_new: OneStatement,
    /// The one-statement append when `expected` requires an existing stream.
    pub append_existing: OneStatement,
    pub record_feed: String,
    /// Notifies listeners of a commit to the table `$1`, when the transaction commits.
    pub notify: String,
    pub feed_horizon: String,
    pub read_feed: String,
    pub entries_by_ids: String,
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
    pub raise_stream_versions: String,
    pub raise_ids: String,
    pub set_annotations: String,
    pub trim: String,
    pub drop_stream_lock: String,
    pub rename_entries: String,
    pub rename_stream: String,
    pub create_fts_index: String,
    pub fts_index_valid: String,
    pub drop_fts_index: String,
    pub get_cursor: String,
    pub get_cursors: String,
    pub set_cursor: String,
}

/// 2^31: feed writers' lock tags are positions modulo this (the second key is an `int4`).
const TAG_SPAN: &str = "2147483648";

impl Statements {
    /// The statements of the store `names`, whose appends record feed entries if `change_feed`.
    pub fn new(names: Names, change_feed: bool) -> Self {
        let t = names.table.as_str();
        let (ids, streams, feed, feed_pos, cursors, key) = (
            &names.ids,
            &names.streams,
            &names.feed,
            &names.feed_pos,
            &names.cursors,
            names.lock_key,
        );
        // The feed writer's fence (see feed.rs): a shared advisory lock tagged with the last
        // position taken so far, held until COMMIT and taken before this writer's `nextval`.
        let fence = format!(
            r#"fence AS MATERIALIZED (
                SELECT pg_advisory_xact_lock_shared({key},
                       ((CASE WHEN is_called THEN last_value ELSE last_value - 1 END)
                        % {TAG_SPAN})::int)
                FROM "{feed_pos}"
            )"#
        );
        // An append's feed record names its rows: their ids as runs `[[first, last], …]`
        // (consecutive ids share a run) and the stream's version after them. A single row is
        // its own run, which spares the server the windowed grouping.
        let feed_of = |runs: &str| {
            if change_feed {
                format!(
                    r#", {fence}, feed AS (
                INSERT INTO "{feed}" (position, stream, ids, version)
                SELECT nextval('"{feed_pos}"'), $1, {runs}, (SELECT max(version) FROM rows)
                FROM fence WHERE EXISTS (SELECT 1 FROM rows)
            )"#
                )
            } else {
                String::new()
            }
        };
        let feed_of_rows = feed_of(
            "(SELECT json_agg(json_build_array(first, last) ORDER BY first)::text
              FROM (SELECT min(id) AS first, max(id) AS last
                    FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS run
                          FROM rows) AS numbered
                    GROUP BY run) AS runs)",
        );
        let feed_of_row = feed_of("(SELECT format('[[%s,%s]]', id, id) FROM rows)");
        // Ids come from `nextval` in ordinality order (PostgreSQL evaluates volatile target
        // expressions after ORDER BY), so ascending versions get ascending ids.
        let returning_rows = "SELECT rows.id, rows.version FROM rows";
        // Entries of one append, as parallel arrays: one round trip whatever the batch size.
        let insert_entries = format!(
            r#"WITH rows AS (
                INSERT INTO "{t}" (id, stream, version, payload, payload_exact, order_key,
                                   dedup_key, schema_version, metadata, tags, created_at)
                SELECT nextval('"{ids}"'), $1, u.version, u.payload::jsonb, u.payload_exact,
                       u.order_key, u.dedup_key, u.schema_version, u.metadata::jsonb,
                       u.tags::jsonb, $2
                FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                            $8::bigint[], $9::text[], $10::text[]) WITH ORDINALITY
                     AS u(version, payload, payload_exact, order_key, dedup_key,
                          schema_version, metadata, tags, ord)
                ORDER BY u.ord
                RETURNING id, version
            ), stream_version AS (
                UPDATE "{streams}" SET version = $11 WHERE stream = $1
            ){feed_of_rows}
            {returning_rows}"#
        );
        // A whole append in one autocommitted statement: bump the stream's version under its row
        // lock if `expected` admits the current one ($12 kind, $13 exact version), then insert
        // the entries at versions after the previous one. No row back means "decide the slow
        // way": `expected` did not hold (a conflict, or a retry of stored duplicates). A taken
        // dedup key aborts the statement with a unique violation, which also means that.
        let read_columns = format!(
            r#"SELECT id, stream, version, payload, order_key, dedup_key, schema_version,
               NULLIF(metadata, '{{}}'::jsonb), NULLIF(tags, '[]'::jsonb),
               NULLIF(annotations, '{{}}'::jsonb), created_at, updated_at, payload_exact
               FROM "{t}" WHERE "#
        );
        let admits = |v: &str| {
            format!(
                "CASE $12::int WHEN 0 THEN TRUE WHEN 1 THEN {v} = 0 WHEN 2 THEN {v} > 0 \
                 ELSE {v} = $13 END"
            )
        };
        // The entries as a row source `u`: parallel arrays for a batch, scalars for a single
        // entry (which spares the server `unnest` and its sort, the larger part of a small
        // append's statement).
        let batch_rows = "unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                          $8::bigint[], $9::text[], $10::text[]) WITH ORDINALITY";
        let single_row = "(VALUES ($3::bigint, $4::text, $5::text, $6::text, $7::text, \
                          $8::bigint, $9::text, $10::text, 1))";
        let statement = |bump: &str, source: &str, feed_of_rows: &str| {
            format!(
                r#"WITH bumped AS ({bump}), rows AS (
                INSERT INTO "{t}" (id, stream, version, payload, payload_exact, order_key,
                                   dedup_key, schema_version, metadata, tags, created_at)
                SELECT nextval('"{ids}"'), $1, b.previous + u.version, u.payload::jsonb,
                       u.payload_exact, u.order_key, u.dedup_key, u.schema_version,
                       u.metadata::jsonb, u.tags::jsonb, $2
                FROM bumped b CROSS JOIN {source}
                     AS u(version, payload, payload_exact, order_key, dedup_key,
                          schema_version, metadata, tags, ord)
                ORDER BY u.ord
                RETURNING id, version
            ){feed_of_rows}
            {returning_rows}"#
            )
        };
        let one_statement = |bump: String| OneStatement {
            batch: statement(&bump, batch_rows, &feed_of_rows),
            single: statement(&bump, single_row, &feed_of_row),
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
            insert_entries,
            // $2 the mutation (JSON text), or for an append $3 its ids' runs and $4 its version.
            record_feed: format!(
                r#"WITH {fence} INSERT INTO "{feed}" (position, stream, mutation, ids, version)
                   SELECT nextval('"{feed_pos}"'), $1, $2, $3, $4 FROM fence"#
            ),
            notify: format!("SELECT pg_notify('{CHANNEL}', $1)"),
            // The highest position below which every record is committed (or rolled back):
            // the last position taken, lowered to the lowest tag of any feed writer's fence
            // still held. The correlated subquery reads `pg_locks` after the sequence.
            feed_horizon: format!(
                r#"SELECT LEAST(s.taken, (
                    SELECT MIN(s.taken - ((s.taken - l.objid::bigint) % {TAG_SPAN} + {TAG_SPAN})
                                         % {TAG_SPAN})
                    FROM pg_locks l
                    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = {key}
                      AND l.database = (SELECT oid FROM pg_database
                                        WHERE datname = current_database())))
                FROM (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                      AS taken FROM "{feed_pos}") AS s"#
            ),
            entries_by_ids: format!("{read_columns}id = ANY($1)"),
            read_columns,
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
            raise_stream_versions: format!(
                r#"INSERT INTO "{streams}" AS s (stream, version)
                   SELECT * FROM unnest($1::text[], $2::bigint[])
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
                r#"SELECT position, stream, mutation, ids, version FROM "{feed}"
                   WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"#
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
            get_cursors: format!(r#"SELECT name, position FROM "{cursors}" WHERE name = ANY($1)"#),
            set_cursor: format!(
                r#"INSERT INTO "{cursors}" (name, position) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE
                   SET position = GREATEST("{cursors}".position, excluded.position)"#
            ),
            names,
        }
    }
}
