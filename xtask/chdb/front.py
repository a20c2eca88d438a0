#!/usr/bin/env python3
"""A small ClickHouse-compatible HTTP front over an in-process chdb engine.

Test infrastructure only: it speaks the subset of ClickHouse's HTTP interface
that the Rust `clickhouse` crate (0.15) uses, so tests can run against a real
ClickHouse engine without a ClickHouse server.

    python front.py --host 127.0.0.1 --port 8123 --data DIR

Prints `ready http://HOST:PORT` once it answers; exits cleanly on SIGTERM/SIGINT.
"""

import argparse
import email.parser
import email.policy
import http.client
import http.server
import json
import re
import signal
import struct
import sys
import threading
import urllib.parse
import uuid

import chdb._chdb
import lz4.block

# URL parameters the real server consumes itself; everything else that is not
# `query` or `param_*` is a setting (list from ClickHouse's HTTPHandler).
RESERVED_PARAMS = {
    "compress", "decompress", "user", "password", "quota_key", "query_id", "stacktrace",
    "role", "buffer_size", "wait_end_of_query", "session_id", "session_timeout",
    "session_check", "client_protocol_version", "close_session", "database", "default_format",
}

# HTTP status by error name, as ClickHouse's exceptionCodeToHTTPStatus does; the
# rest is 500. Names are resolved to codes by the engine at start-up.
STATUS_BY_ERROR = {
    400: "BAD_ARGUMENTS CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE CANNOT_PARSE_QUOTED_STRING "
         "CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER CANNOT_PARSE_INPUT_ASSERTION_FAILED "
         "CANNOT_PARSE_UUID CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 DUPLICATE_COLUMN ILLEGAL_COLUMN "
         "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE TOO_DEEP_AST TOO_BIG_AST "
         "UNEXPECTED_AST_STRUCTURE VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE SYNTAX_ERROR INCORRECT_DATA "
         "TYPE_MISMATCH BAD_REQUEST_PARAMETER BAD_QUERY_PARAMETER UNKNOWN_QUERY_PARAMETER",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
         "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION "
         "UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
    501: "NOT_IMPLEMENTED",
}

# `INSERT ... FORMAT name` followed by data. Data starts after the first newline
# following the format name, or after the blanks if there is none (ClickHouse's
# ParserInsertQuery rule); only blanks may be skipped, since binary rows may start
# with whitespace bytes.
INSERT_WITH_DATA = re.compile(
    rb"\s*(INSERT\s+INTO\s[^;']*?)\s+FORMAT\s+(\w+)[ \t\f]*(?:\r?\n)?", re.IGNORECASE | re.DOTALL)
TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

CODEC_NONE, CODEC_LZ4 = 0x02, 0x82


class QueryError(Exception):
    """An error to report the ClickHouse way; message starts with `Code: N.`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def engine_error(exc):
    """chdb raises RuntimeError whose text is ClickHouse's own message; keep it
    from the first `Code: N.` on, in case something prefixed it."""
    text = str(exc)
    m = re.search(r"Code: (\d+)\. ", text)
    if not m:
        return QueryError(1001, f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)")
    return QueryError(int(m.group(1)), text[m.start():])


def decompress_blocks(data):
    """Decode ClickHouse's native compressed framing (what `decompress=1` means):
    per block a 16-byte CityHash128 (not verified: no stdlib CityHash), a method
    byte, UInt32 LE size of header+payload, UInt32 LE decompressed size, payload."""
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < 25:
            raise QueryError(271, "Code: 271. DB::Exception: Truncated compressed block header. (CANNOT_DECOMPRESS)")
        method, csize, dsize = struct.unpack_from("<BII", data, pos + 16)
        payload = data[pos + 25:pos + 16 + csize]
        if csize < 9 or len(payload) != csize - 9:
            raise QueryError(271, f"Code: 271. DB::Exception: Truncated compressed block: expected {csize} bytes. (CANNOT_DECOMPRESS)")
        if dsize > 1 << 30:  # ClickHouse's own limit; also spares a huge allocation
            raise QueryError(271, f"Code: 271. DB::Exception: Too large size of a decompressed block: {dsize}. (CANNOT_DECOMPRESS)")
        if method == CODEC_LZ4:
            try:
                block = lz4.block.decompress(payload, uncompressed_size=dsize)
            except Exception as e:
                raise QueryError(271, f"Code: 271. DB::Exception: Cannot decompress LZ4 block: {e}. (CANNOT_DECOMPRESS)")
            if len(block) != dsize:
                raise QueryError(271, "Code: 271. DB::Exception: LZ4 block has a wrong decompressed size. (CANNOT_DECOMPRESS)")
        elif method == CODEC_NONE:
            block = payload
        else:
            raise QueryError(89, f"Code: 89. DB::Exception: Unknown compression method 0x{method:02x}. (UNKNOWN_COMPRESSION_METHOD)")
        out.append(block)
        pos += 16 + csize
    return b"".join(out)


def quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def content_type(fmt):
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if f == "jsoneachrow":
        return "application/x-ndjson; charset=UTF-8"
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith(("rowbinary", "native", "parquet", "arrow", "orc", "avro")):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


class Engine:
    """One chdb connection; requests run one at a time (chdb allows one open
    streaming insert per connection, and per-request settings are applied to the
    shared session with SET, so requests must not interleave).

    Uses chdb's native module directly: the `chdb.connect()` wrapper adds nothing
    here but a prefix on error texts, and lacks `classify_query`."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.conn = chdb._chdb.connect(path)
        self.version = self._query("SELECT version()").bytes().decode().strip()
        self.known_settings = set(self._query("SELECT name FROM system.settings").bytes().decode().split())
        # The session state every request starts from: chdb itself changes a few
        # settings, which must be restored to these values rather than to DEFAULT.
        self.base_db, self.base_settings = self._session_state()
        names = {n: s for s, ns in STATUS_BY_ERROR.items() for n in ns.split()}
        rows = self._query("SELECT number, errorCodeToName(number) FROM numbers(2000)").bytes()
        self.status = {}
        for line in rows.decode().splitlines():
            code, name = line.split("\t")
            if name in names:
                self.status[int(code)] = names[name]

    def _query(self, sql, fmt="TabSeparated", params=None):
        try:
            res = self.conn.query(sql, fmt, params=params or {})
        except Exception as e:
            raise engine_error(e) from None
        if res.has_error():
            raise engine_error(res.error_message())
        return res

    def _session_state(self):
        row = self._query(
            "SELECT currentDatabase() AS db, CAST(groupArray((name, value)), 'Map(String, String)') AS s "
            "FROM system.settings WHERE changed AND name != 'database'", "JSONEachRow").bytes()
        row = json.loads(row)
        return row["db"], row["s"]

    def _check(self, sql, readonly):
        """Refuse what a ClickHouse server refuses but chdb (a local client) allows."""
        info = self.conn.classify_query(sql)
        if info["statement_count"] > 1:
            raise QueryError(62, "Code: 62. DB::Exception: Syntax error (Multi-statements are not allowed). (SYNTAX_ERROR)")
        cls = info["query_class"].name
        if readonly and (cls.startswith("MUTATING") or (readonly == 1 and cls == "CONTROL")):
            hint = (" For queries over HTTP, method GET implies readonly."
                    " You should use method POST for modifying queries") if readonly == 2 else ""
            raise QueryError(164, f"Code: 164. DB::Exception: Cannot execute query in readonly mode.{hint}. (READONLY)")
        return cls

    def _restore(self, names, database, full):
        """Undo what the request changed, as a fresh ClickHouse HTTP request
        context would. URL settings and `database` are known; SET or USE in the
        SQL, or a failed SET, cost a look at the session state."""
        if full or not self.known_settings.issuperset(names):
            database, current = self._session_state()
            names = [n for n in set(current) | set(self.base_settings)
                     if current.get(n) != self.base_settings.get(n)]
        if database and database != self.base_db:
            self._query(f"USE `{self.base_db}`")
        if names:
            self._query("SET " + ", ".join(
                f"{n} = {quote(self.base_settings[n])}" if n in self.base_settings else f"{n} = DEFAULT"
                for n in names))

    def run(self, sql, data, fmt, database, settings, params, readonly):
        """Run one request; returns (output bytes, summary dict)."""
        for name in settings:
            if not IDENT.match(name):
                raise QueryError(115, f"Code: 115. DB::Exception: Unknown setting {name!r}. (UNKNOWN_SETTING)")
        with self.lock:
            cls = None
            try:
                cls = self._check(sql if data is None else f"{sql} FORMAT {fmt}", readonly)
                if database:
                    self._query("USE `" + database.replace("\\", "\\\\").replace("`", "\\`") + "`")
                if settings:
                    self._query("SET " + ", ".join(f"{n} = {quote(v)}" for n, v in settings.items()))
                if data is not None:
                    return self._insert(sql, data, fmt)
                res = self._query(sql, fmt, params)
                return res.bytes(), {
                    "read_rows": res.rows_read(), "read_bytes": res.bytes_read(),
                    "written_rows": res.rows_written(), "written_bytes": res.bytes_written(),
                    "elapsed_ns": int(res.elapsed() * 1e9)}
            finally:
                if cls is not None:
                    self._restore(list(settings), database, cls == "CONTROL")

    def _insert(self, statement, data, fmt):
        # query() takes SQL text only; send_insert() streams raw FORMAT-encoded
        # bytes into the statement, so binary rows arrive exactly.
        try:
            inserter = self.conn.send_insert(statement, fmt)
        except Exception as e:
            raise engine_error(e) from None
        done = False
        try:
            if data:
                self.conn.insert_append(inserter, data)
            res = self.conn.insert_done(inserter)
            done = True
        except Exception as e:
            raise engine_error(e) from None
        finally:
            if not done:  # an open insert would block the connection
                try:
                    self.conn.insert_cancel(inserter)
                except Exception:
                    pass
        return b"", {"written_rows": res.rows_written(), "written_bytes": res.bytes_written(),
                     "elapsed_ns": int(res.elapsed() * 1e9)}

    def close(self):
        with self.lock:
            self.conn.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the crate's pooled client expects
    # Headers and body go out in separate writes; with Nagle on, the body waits
    # for the client's delayed ACK (~40 ms per request on a kept-alive socket).
    disable_nagle_algorithm = True
    engine = None  # set in main()

    def log_message(self, *args):
        pass  # a test run issues thousands of requests

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def read_body(self):
        # The crate streams INSERT bodies with chunked transfer encoding, which
        # http.server does not decode itself.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_request(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True  # framing lost: cannot find the next request
            return self.reply_error(QueryError(
                1000, "Code: 1000. DB::Exception: Malformed chunked request body. (POCO_EXCEPTION)"))
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping" or (url.path == "/" and not body and "query" not in params):
            return self.reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
        if url.path != "/":
            return self.reply(404, f"There is no handle {url.path}\n".encode(),
                              {"Content-Type": "text/plain; charset=UTF-8"})
        try:
            self.reply_query(params, body)
        except QueryError as e:
            self.reply_error(e)
        except Exception as e:  # never let one bad request take the server down
            self.reply_error(QueryError(1001, f"Code: 1001. DB::Exception: {type(e).__name__}: {e}. (STD_EXCEPTION)"))

    def reply_query(self, params, body):
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            # Form fields act like URL parameters (`query`, `param_*`, settings).
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            for part in msg.iter_parts():
                if part.get_filename() is not None:
                    raise QueryError(48, "Code: 48. DB::Exception: External data is not supported by chdb front. (NOT_IMPLEMENTED)")
                params[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True).decode()
            body = b""
        elif params.get("decompress", "0") not in ("", "0", "false"):
            body = decompress_blocks(body)

        # As in ClickHouse, the SQL is the `query` parameter followed by the body.
        head = params.get("query")
        text = (head.encode() + b"\n" + body) if head is not None and body else (head.encode() if head is not None else body)
        fmt = params.get("default_format") or "TabSeparated"
        if not IDENT.match(fmt):
            raise QueryError(73, f"Code: 73. DB::Exception: Unknown format {fmt}. (UNKNOWN_FORMAT)")
        data = None
        m = INSERT_WITH_DATA.match(text, 0, 65536) if text[:64].lstrip()[:6].upper() == b"INSERT" else None
        if m:
            sql, fmt, data = m.group(1).decode(), m.group(2).decode(), text[m.end():]
        else:
            try:
                sql = text.decode()
            except UnicodeDecodeError:
                raise QueryError(36, "Code: 36. DB::Exception: Query text is not valid UTF-8. (BAD_ARGUMENTS)")
            m = TRAILING_FORMAT.search(sql)
            if m:
                fmt = m.group(1)
        settings = {k: v for k, v in params.items()
                    if k and k != "query" and k not in RESERVED_PARAMS and not k.startswith("param_")}
        qparams = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        # `readonly` is emulated, not SET: once set, the session could not undo it.
        # As in ClickHouse, GET implies readonly=2.
        readonly = int(settings.pop("readonly", "0") or "0")
        if self.command == "GET" and not readonly:
            readonly = 2
        out, summary = self.engine.run(sql, data, fmt, params.get("database"), settings, qparams, readonly)
        summary = {k: str(summary.get(k, 0)) for k in (
            "read_rows", "read_bytes", "written_rows", "written_bytes",
            "total_rows_to_read", "result_rows", "result_bytes", "elapsed_ns")}
        self.reply(200, out, {
            "Content-Type": content_type(fmt),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
        })

    def reply_error(self, e):
        text = str(e).rstrip()
        if not re.search(r"\(version [^()]*(\([^()]*\))?\)$", text):
            text += f" (version {self.engine.version})"
        self.reply(self.engine.status.get(e.code, 500), (text + "\n").encode(), {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(e.code),
        })

    def reply(self, status, body, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block exit
    block_on_close = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    ap.add_argument("--data", required=True, help="directory holding the chdb data")
    args = ap.parse_args()

    Handler.engine = Engine(args.data)
    httpd = Server((args.host, args.port), Handler)
    host, port = httpd.server_address[:2]
    # shutdown() blocks until serve_forever() returns, so it cannot run in the
    # signal handler, which interrupts serve_forever() on this same thread.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=httpd.shutdown).start())

    failed = []

    def announce():
        # Announce only once a real request round-trips.
        try:
            ping = http.client.HTTPConnection("127.0.0.1" if host in ("0.0.0.0", "") else host, port, timeout=10)
            ping.request("GET", "/ping")
            if ping.getresponse().read() != b"Ok.\n":
                raise RuntimeError("unexpected /ping answer")
            ping.close()
            print(f"ready http://{host}:{port}", flush=True)
        except Exception as e:
            print(f"front: self-check failed: {e}", file=sys.stderr)
            failed.append(e)
            httpd.shutdown()

    threading.Thread(target=announce, daemon=True).start()
    httpd.serve_forever(poll_interval=0.1)
    httpd.server_close()
    Handler.engine.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
