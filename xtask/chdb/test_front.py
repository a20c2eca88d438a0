"""Tests for front.py: start it as a server and talk HTTP to it the way the Rust
`clickhouse` crate does.

    VENV/bin/python -m unittest discover -s xtask/chdb     # from the repo root
    VENV/bin/python -m unittest                            # from xtask/chdb
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import lz4.block

FRONT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "front.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_front(data_dir):
    """Start front.py; returns (process, port, seconds until `ready`)."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, FRONT, "--host", "127.0.0.1", "--port", str(port), "--data", data_dir],
        stdout=subprocess.PIPE, text=True)
    line = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(120)
    if not line or line[0] != f"ready http://127.0.0.1:{port}\n":
        proc.kill()
        raise RuntimeError(f"front.py did not announce readiness: {line!r}")
    return proc, port, time.monotonic() - started


def stop_front(proc):
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    proc.stdout.close()
    return code


# --- RowBinary encoding, as the crate writes it ---

def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rb_string(b):
    return varint(len(b)) + b


def rb_nullable_string(b):
    return b"\x01" if b is None else b"\x00" + rb_string(b)


def rb_array_string(items):
    return varint(len(items)) + b"".join(rb_string(x) for x in items)


def rb_row(s, n, a, u, i):
    return rb_string(s) + rb_nullable_string(n) + rb_array_string(a) + struct.pack("<Qq", u, i)


ROWS = [  # (String, Nullable(String), Array(String), UInt64, Int64), sorted by UInt64
    (b"", b"\xc3\x28 not utf-8", [], 0, 2**63 - 1),
    (b"plain", b"", [b"p", b"q"], 1, -1),
    (b"tab\there", None, [b"\n"], 2, 0),
    (b"a\x00\xff\xfe\r\n\\'", None, [b"", b"\x00x\x80"], 2**64 - 1, -2**63),
]
COLUMNS = "s String, n Nullable(String), a Array(String), u UInt64, i Int64"


def lz4_blocks(data, block_size):
    """ClickHouse native compressed framing, as the crate sends with `decompress=1`.
    The checksum is left zero: the front does not verify it."""
    out = b""
    for pos in range(0, len(data), block_size):
        chunk = data[pos:pos + block_size]
        payload = lz4.block.compress(chunk, store_size=False)
        out += b"\0" * 16 + struct.pack("<BII", 0x82, 9 + len(payload), len(chunk)) + payload
    return out


def multipart(query, params):
    """The body the crate sends for queries with server-side parameters."""
    boundary = "clickhouse-rs-boundary-" + "".join(random.choices("abcdefghijklmnop0123456789", k=16))
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                   for name, value in [("query", query), *params.items()])
    return (body + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


class FrontTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.mkdtemp(prefix="chdb-front-test-")
        cls.proc, cls.port, cls.startup_seconds = start_front(cls.data_dir)

    @classmethod
    def tearDownClass(cls):
        code = stop_front(cls.proc)
        shutil.rmtree(cls.data_dir, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"front.py exited with {code} on SIGTERM")

    # --- helpers ---

    def request(self, method="POST", params=None, body=None, headers=None, path="/", conn=None, chunked=False):
        """One request; returns (status, headers, body). `chunked` streams the body
        with chunked transfer encoding, as the crate does for INSERTs."""
        url = path + ("?" + urllib.parse.urlencode(params) if params else "")
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            if chunked:
                pieces = [body[i:i + 7] for i in range(0, len(body), 7)] or [b""]
                conn.request(method, url, body=iter(pieces), headers=headers or {}, encode_chunked=True)
            else:
                conn.request(method, url, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            if own:
                conn.close()
        # The crate reads bodies as plain unless the server says otherwise.
        self.assertIsNone(resp.getheader("Content-Encoding"))
        return resp.status, resp, data

    def ok(self, sql, **params):
        status, resp, data = self.request(body=sql.encode(), params=params)
        self.assertEqual(status, 200, data)
        self.assertIsNone(resp.getheader("X-ClickHouse-Exception-Code"))
        return data

    def assert_error(self, code, status, result):
        got_status, resp, data = result
        self.assertEqual(got_status, status, data)
        self.assertEqual(resp.getheader("X-ClickHouse-Exception-Code"), str(code))
        text = data.decode()
        self.assertTrue(text.startswith(f"Code: {code}. DB::Exception: "), text)
        self.assertRegex(text, r"\(version [0-9.]+\)\n\Z")
        return text

    def make_rows_table(self, name):
        self.ok(f"DROP TABLE IF EXISTS {name}")
        self.ok(f"CREATE TABLE {name} ({COLUMNS}) ENGINE = MergeTree ORDER BY u")

    def read_rows_back(self, name, **params):
        return self.ok(f"SELECT s, n, a, u, i FROM {name} ORDER BY u", default_format="RowBinary", **params)

    # --- server basics ---

    def test_ping_and_root_answer_ok(self):
        for path in ("/ping", "/"):
            status, _, data = self.request("GET", path=path)
            self.assertEqual((status, data), (200, b"Ok.\n"))

    def test_startup_printed_ready_line_quickly(self):
        self.assertLess(self.startup_seconds, 60)

    def test_select_with_sql_in_body(self):
        status, resp, data = self.request(body=b"SELECT 1 + 1")
        self.assertEqual((status, data), (200, b"2\n"))
        self.assertEqual(resp.getheader("X-ClickHouse-Format"), "TabSeparated")
        summary = json.loads(resp.getheader("X-ClickHouse-Summary"))
        self.assertTrue(all(isinstance(v, str) for v in summary.values()))
        self.assertIn("read_rows", summary)

    def test_select_with_sql_in_query_param_get_and_post(self):
        for method in ("GET", "POST"):
            status, _, data = self.request(method, params={"query": "SELECT 'x' || 'y'"})
            self.assertEqual((status, data), (200, b"xy\n"), method)

    def test_query_param_is_continued_by_body(self):
        status, _, data = self.request(params={"query": "SELECT 40"}, body=b"+ 2")
        self.assertEqual((status, data), (200, b"42\n"))

    def test_version_is_a_current_clickhouse(self):
        major = int(self.ok("SELECT version()").split(b".")[0])
        self.assertGreaterEqual(major, 24)

    def test_keep_alive_connection_serves_requests_after_an_error(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            for sql, want in ((b"SELECT 1", 200), (b"SELECT * FROM no_such_table", 404), (b"SELECT 2", 200)):
                status, _, _ = self.request(body=sql, conn=conn)
                self.assertEqual(status, want, sql)
        finally:
            conn.close()

    def test_concurrent_requests_keep_their_own_settings(self):
        failures = []

        def worker(k):
            try:
                for _ in range(10):
                    data = self.ok("SELECT getSetting('max_block_size')", max_block_size=str(1000 + k))
                    if data != b"%d\n" % (1000 + k):
                        failures.append((k, data))
            except Exception as e:  # reported below, in the test's thread
                failures.append((k, e))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])

    # --- output formats ---

    def test_default_format_tab_separated_escapes_and_nulls(self):
        data = self.ok("SELECT 'a\\tb\\nc' AS s, NULL AS n, toUInt64(18446744073709551615) AS u",
                       default_format="TabSeparated")
        self.assertEqual(data, b"a\\tb\\nc\t\\N\t18446744073709551615\n")

    def test_default_format_json_each_row(self):
        status, resp, data = self.request(
            body=b"SELECT 1 AS n, toUInt64(5) AS big, 'x\"' AS s, [1, 2] AS a FROM numbers(2)",
            params={"default_format": "JSONEachRow"})
        self.assertEqual(status, 200)
        # Current ClickHouse no longer quotes 64-bit integers in JSON by default.
        self.assertEqual(data, b'{"n":1,"big":5,"s":"x\\"","a":[1,2]}\n' * 2)
        self.assertEqual(resp.getheader("X-ClickHouse-Format"), "JSONEachRow")

    def test_default_format_row_binary(self):
        data = self.ok("SELECT toUInt64(7) AS u, 'ab' AS s, CAST(NULL, 'Nullable(Int32)') AS n",
                       default_format="RowBinary")
        self.assertEqual(data, struct.pack("<Q", 7) + b"\x02ab" + b"\x01")

    def test_default_format_row_binary_with_names_and_types(self):
        data = self.ok("SELECT toUInt64(7) AS u, 'ab' AS s", default_format="RowBinaryWithNamesAndTypes")
        header = b"\x02" + rb_string(b"u") + rb_string(b"s") + rb_string(b"UInt64") + rb_string(b"String")
        self.assertEqual(data, header + struct.pack("<Q", 7) + b"\x02ab")

    def test_format_clause_in_sql_overrides_default_format(self):
        status, resp, data = self.request(body=b"SELECT 1 AS x FORMAT JSONEachRow",
                                          params={"default_format": "RowBinary"})
        self.assertEqual((status, data), (200, b'{"x":1}\n'))
        self.assertEqual(resp.getheader("X-ClickHouse-Format"), "JSONEachRow")

    def test_unknown_default_format_is_error_73(self):
        self.assert_error(73, 404, self.request(body=b"SELECT 1", params={"default_format": "NoSuchFormat"}))

    # --- per-request parameters ---

    def test_database_param_applies_to_that_request_only(self):
        self.ok("CREATE DATABASE IF NOT EXISTS other_db")
        self.ok("CREATE TABLE IF NOT EXISTS other_db.only_here (x UInt8) ENGINE = Memory")
        self.assertEqual(self.ok("SELECT currentDatabase()", database="other_db"), b"other_db\n")
        self.assertEqual(self.ok("SELECT count() FROM only_here", database="other_db"), b"0\n")
        self.assertEqual(self.ok("SELECT currentDatabase()"), b"default\n")
        self.assert_error(60, 404, self.request(body=b"SELECT count() FROM only_here"))

    def test_unknown_database_param_is_error_81(self):
        self.assert_error(81, 404, self.request(body=b"SELECT 1", params={"database": "no_such_db"}))

    def test_multipart_query_with_server_side_params(self):
        body, ctype = multipart("SELECT\n  {a: UInt8} + 1,\r\n{s: String}, -- comment\n{e: String}",
                                {"param_a": "41", "param_s": "tab\\there", "param_e": ""})
        status, _, data = self.request(body=body, headers={"Content-Type": ctype})
        self.assertEqual((status, data), (200, b"42\ttab\\there\t\n"))

    def test_url_query_params_bind_server_side_params(self):
        status, _, data = self.request("GET", params={"query": "SELECT {n: UInt32} * 2", "param_n": "21"})
        self.assertEqual((status, data), (200, b"42\n"))

    def test_settings_apply_per_request_and_do_not_leak(self):
        sql = "SELECT getSetting('max_block_size'), getSetting('describe_include_subcolumns')"
        baseline = self.ok(sql)
        self.assertEqual(self.ok(sql, max_block_size="1234", describe_include_subcolumns="0"), b"1234\tfalse\n")
        self.assertEqual(self.ok(sql), baseline)
        # Settings the crate commonly sends are accepted.
        self.ok("SELECT 1", wait_end_of_query="1", query_id="q-1", session_id="s-1", max_insert_block_size="100")

    def test_set_and_use_in_sql_do_not_leak_into_later_requests(self):
        baseline = self.ok("SELECT getSetting('max_block_size'), currentDatabase()")
        self.ok("CREATE DATABASE IF NOT EXISTS leak_db")
        self.ok("SET max_block_size = 777")
        self.ok("USE leak_db")
        self.assertEqual(self.ok("SELECT getSetting('max_block_size'), currentDatabase()"), baseline)

    def test_unknown_setting_is_error_115_and_changes_nothing(self):
        sql = "SELECT getSetting('max_block_size')"
        baseline = self.ok(sql)
        self.assert_error(115, 404, self.request(body=b"SELECT 1",
                                                 params={"max_block_size": "99", "no_such_setting": "1"}))
        self.assertEqual(self.ok(sql), baseline)

    def test_query_id_is_echoed(self):
        _, resp, _ = self.request(body=b"SELECT 1", params={"query_id": "my-query"})
        self.assertEqual(resp.getheader("X-ClickHouse-Query-Id"), "my-query")

    # --- inserts ---

    def insert(self, table, body, fmt="RowBinary", chunked=True, **params):
        # Quoted the way the crate quotes identifiers.
        return self.request(params={"query": f"INSERT INTO `{table}`(`s`,`n`,`a`,`u`,`i`) FORMAT {fmt}", **params},
                            body=body, chunked=chunked)

    def test_insert_row_binary_uncompressed_round_trips_exact_bytes(self):
        self.make_rows_table("rb_plain")
        status, resp, data = self.insert("rb_plain", b"".join(rb_row(*r) for r in ROWS))
        self.assertEqual((status, data), (200, b""))
        self.assertEqual(json.loads(resp.getheader("X-ClickHouse-Summary"))["written_rows"], str(len(ROWS)))
        self.assertEqual(self.read_rows_back("rb_plain"), b"".join(rb_row(*r) for r in ROWS))

    def test_insert_row_binary_lz4_compressed_round_trips_exact_bytes(self):
        self.ok("CREATE DATABASE IF NOT EXISTS ins_db")
        self.ok("DROP TABLE IF EXISTS ins_db.rb_lz4")
        self.ok(f"CREATE TABLE ins_db.rb_lz4 ({COLUMNS}) ENGINE = MergeTree ORDER BY u")
        rows = b"".join(rb_row(*r) for r in ROWS)
        # Several blocks, with rows split across block boundaries.
        body = lz4_blocks(rows, 10)
        status, _, data = self.insert("rb_lz4", body, decompress="1", database="ins_db",
                                      max_insert_block_size="2")
        self.assertEqual((status, data), (200, b""))
        self.assertEqual(self.read_rows_back("rb_lz4", database="ins_db"), rows)

    def test_insert_row_binary_with_names_and_types_as_the_validating_crate_sends(self):
        self.make_rows_table("rbwnat")
        header = (varint(5) + b"".join(rb_string(c) for c in (b"s", b"n", b"a", b"u", b"i"))
                  + b"".join(rb_string(t) for t in (b"String", b"Nullable(String)", b"Array(String)",
                                                    b"UInt64", b"Int64")))
        rows = b"".join(rb_row(*r) for r in ROWS)
        status, _, data = self.insert("rbwnat", lz4_blocks(header + rows, 1 << 20),
                                      fmt="RowBinaryWithNamesAndTypes", decompress="1")
        self.assertEqual((status, data), (200, b""))
        self.assertEqual(self.read_rows_back("rbwnat"), rows)
        # The crate's metadata query for validation.
        described = self.ok("DESCRIBE TABLE `rbwnat`", default_format="RowBinaryWithNamesAndTypes",
                            describe_include_subcolumns="0")
        self.assertIn(b"Nullable(String)", described)

    def test_insert_1000_rows(self):
        self.make_rows_table("rb_many")
        rows = b"".join(rb_row(b"row %d" % k, None, [b"x"] * (k % 3), k, -k) for k in range(1000))
        status, _, _ = self.insert("rb_many", lz4_blocks(rows, 256 * 1024), decompress="1")
        self.assertEqual(status, 200)
        self.assertEqual(self.ok("SELECT count(), sum(u) FROM rb_many"), b"1000\t499500\n")

    def test_insert_values_and_text_formats_in_body(self):
        self.ok("CREATE TABLE IF NOT EXISTS text_ins (k UInt32, v String) ENGINE = MergeTree ORDER BY k")
        self.ok("TRUNCATE TABLE text_ins")
        self.ok("INSERT INTO text_ins VALUES (1, 'one')")
        self.ok("INSERT INTO text_ins FORMAT TabSeparated\n2\ttwo\n")
        status, _, _ = self.request(params={"query": "INSERT INTO text_ins FORMAT JSONEachRow"},
                                    body=b'{"k":3,"v":"three"}\n')
        self.assertEqual(status, 200)
        self.assertEqual(self.ok("SELECT * FROM text_ins ORDER BY k"), b"1\tone\n2\ttwo\n3\tthree\n")

    def test_insert_into_unknown_table_is_error_60(self):
        self.assert_error(60, 404, self.insert("no_such_table", rb_row(*ROWS[0])))

    def test_truncated_row_binary_is_an_error_and_later_inserts_work(self):
        self.make_rows_table("rb_broken")
        self.assert_error(33, 500, self.insert("rb_broken", rb_row(*ROWS[1])[:-3]))
        self.assertEqual(self.insert("rb_broken", rb_row(*ROWS[1]))[0], 200)
        self.assertEqual(self.ok("SELECT count() FROM rb_broken"), b"1\n")

    # --- errors ---

    def test_unknown_table_is_error_60_with_code_in_body_and_header(self):
        text = self.assert_error(60, 404, self.request(body=b"SELECT * FROM no_such_table"))
        self.assertIn("(UNKNOWN_TABLE)", text)

    def test_syntax_error_is_error_62(self):
        text = self.assert_error(62, 400, self.request(body=b"SELEC 1"))
        self.assertIn("(SYNTAX_ERROR)", text)

    def test_multi_statements_are_refused_like_a_server(self):
        self.assert_error(62, 400, self.request(body=b"SELECT 1; SELECT 2"))

    def test_get_is_readonly_like_a_server(self):
        self.assert_error(164, 500, self.request("GET", params={
            "query": "CREATE TABLE get_made (x UInt8) ENGINE = Memory"}))
        self.assertEqual(self.ok("EXISTS TABLE get_made"), b"0\n")

    def test_malformed_compressed_bodies_are_errors_and_server_keeps_answering(self):
        self.make_rows_table("rb_bad_lz4")
        good = lz4_blocks(rb_row(*ROWS[1]), 1 << 20)
        cases = {
            "truncated header": (good[:20], 271),
            "truncated payload": (good[:-1], 271),
            "unknown method": (good[:16] + b"\x90" + good[17:], 89),
            "corrupt lz4": (good[:25] + b"\xff" * (len(good) - 25), 271),
            "wrong decompressed size": (good[:21] + struct.pack("<I", 999) + good[25:], 271),
            "huge decompressed size": (good[:21] + struct.pack("<I", 0xFFFFFFFF) + good[25:], 271),
        }
        for name, (body, code) in cases.items():
            with self.subTest(name):
                self.assert_error(code, 500, self.insert("rb_bad_lz4", body, decompress="1"))
        self.assertEqual(self.request("GET", path="/ping")[2], b"Ok.\n")
        self.assertEqual(self.insert("rb_bad_lz4", good, decompress="1")[0], 200)
        self.assertEqual(self.ok("SELECT count() FROM rb_bad_lz4"), b"1\n")

    def test_malformed_chunked_body_is_an_error_and_server_keeps_answering(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nSELECT 1\r\n")
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 500"), reply)
        self.assertEqual(self.ok("SELECT 1"), b"1\n")

    # --- engine behaviour the SDK relies on ---

    def test_replacing_merge_tree_final_keeps_latest_version(self):
        self.ok("DROP TABLE IF EXISTS replacing")
        self.ok("CREATE TABLE replacing (k UInt32, v String, ver UInt64) "
                "ENGINE = ReplacingMergeTree(ver) ORDER BY k")
        for ver, v in ((1, "a"), (3, "c"), (2, "b")):  # separate parts
            self.ok(f"INSERT INTO replacing VALUES (1, '{v}', {ver}), (2, '{v}', {ver})")
        self.assertEqual(self.ok("SELECT count() FROM replacing"), b"6\n")
        self.assertEqual(self.ok("SELECT k, v, ver FROM replacing FINAL ORDER BY k"), b"1\tc\t3\n2\tc\t3\n")

    def test_alter_delete_with_mutations_sync_2_is_done_when_the_response_arrives(self):
        self.ok("DROP TABLE IF EXISTS mutated")
        self.ok("CREATE TABLE mutated (k UInt64) ENGINE = MergeTree ORDER BY k")
        for part in range(4):
            self.ok(f"INSERT INTO mutated SELECT number FROM numbers({part * 50000}, 50000)")
        self.ok("ALTER TABLE mutated DELETE WHERE k % 2 = 0", mutations_sync="2")
        self.assertEqual(self.ok("SELECT count() FROM mutated"), b"100000\n")
        self.assertEqual(self.ok("SELECT min(is_done) FROM system.mutations WHERE table = 'mutated'"), b"1\n")


class LifecycleTest(unittest.TestCase):
    def test_data_persists_across_restart_and_sigterm_exits_cleanly(self):
        data_dir = tempfile.mkdtemp(prefix="chdb-front-life-")
        try:
            for round_ in range(2):
                proc, port, _ = start_front(data_dir)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                sql = (b"CREATE TABLE kept (x UInt8) ENGINE = MergeTree ORDER BY x" if round_ == 0
                       else b"SELECT count() FROM kept")
                conn.request("POST", "/", body=sql)
                resp = conn.getresponse()
                self.assertEqual((resp.status, resp.read()), (200, b"" if round_ == 0 else b"0\n"))
                conn.close()
                self.assertEqual(stop_front(proc), 0)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
