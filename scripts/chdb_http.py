#!/usr/bin/env python3
"""A stand-in for ClickHouse's HTTP interface, on top of chdb (ClickHouse's engine as a library).

What it is for: no current clickhouse-server can be installed here (Debian ships 18.16), but PyPI's
chdb-core carries the SQL engine of a current ClickHouse release. This front end lets the vigil
ClickHouse sink's SQL (the CREATE DATABASE/TABLE DDL, the JSONEachRow inserts, the presence
queries on system.processes and the tables) run against that engine, with its data in a directory
that survives a restart of this process. The HTTP layer of a real server (chunked answers,
keep-alive, its exact headers) is not what this checks: the test against Debian's 18.16 server
covers the sink's HTTP client.

The subset emulated, as clickhouse-server does it:
- GET /ping (and GET / without a query) answer "Ok.\\n".
- GET or POST /?query=SQL: the query is the `query` parameter, then "\\n" and the body if there is
  one (so the body of an INSERT is its data); with no `query` parameter the body is the query.
  Default output format TabSeparated; a FORMAT clause in the query wins.
- Errors: the engine's "Code: N. DB::Exception: ... (NAME)" text, the HTTP status ClickHouse maps
  that code to (400 bad input, 403 authentication, 404 unknown table/database, else 500) and the
  X-ClickHouse-Exception-Code header.
- With --user, X-ClickHouse-User/X-ClickHouse-Key must match --user/--password, or the answer is
  a current release's: HTTP 403, "Code: 516 ... (AUTHENTICATION_FAILED)".
Not emulated: query_id (accepted and ignored, so neither its uniqueness among running queries nor
the other queries in system.processes, which only ever lists the query reading it), any other URL
parameter (refused rather than guessed at: ClickHouse takes them as settings), users other than
--user, compression, sessions, concurrency (queries run one at a time: a chdb session is used
under a lock).

Usage: chdb_http.py --port 8123 --data DIR [--user U --password P]; prints "ready ..." when it
listens. SIGTERM waits for the running query, closes the session and exits.
"""
import argparse
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from chdb.session import Session

STATUS_400 = {
    "BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
    "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
    "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6", "CANNOT_PARSE_UUID",
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN", "THERE_IS_NO_COLUMN",
    "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "TOO_DEEP_AST", "TOO_BIG_AST",
    "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
}
STATUS_403 = {"UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"}
STATUS_404 = {
    "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
    "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
    "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE",
}


def http_status(message):
    """ClickHouse's HTTP status for an exception text ending in "(ERROR_NAME)"."""
    names = re.findall(r"\(([A-Z][A-Z0-9_]+)\)", message)
    name = names[-1] if names else ""
    if name == "REQUIRED_PASSWORD":
        return 401
    for status, group in ((400, STATUS_400), (403, STATUS_403), (404, STATUS_404)):
        if name in group:
            return status
    return 500


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", required=True, help="the chdb data directory (kept across restarts)")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    args = ap.parse_args()

    session = Session(args.data)
    lock = threading.Lock()
    version = session.query("SELECT version()", "TabSeparated").bytes().decode().strip()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, body, code=None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            if code is not None:
                self.send_header("X-ClickHouse-Exception-Code", code)
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def fail(self, message):
            m = re.match(r"Code: (\d+)", message)
            if "(version " not in message:
                message = f"{message.rstrip()} (version {version})"
            self.answer(http_status(message), message + "\n", m.group(1) if m else "1001")

        def handle_any(self):
            url = urlsplit(self.path)
            params = parse_qs(url.query, keep_blank_values=True)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode() if n else ""
            if url.path == "/ping" or (url.path == "/" and self.command == "GET" and "query" not in params):
                return self.answer(200, "Ok.\n")
            if url.path != "/":
                return self.answer(404, f"There is no handle {url.path}\n")
            if args.user:
                user = self.headers.get("X-ClickHouse-User", "default")
                if user != args.user or self.headers.get("X-ClickHouse-Key", "") != args.password:
                    return self.fail(
                        f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, "
                        "or there is no user with such name. (AUTHENTICATION_FAILED)"
                    )
            unknown = sorted(set(params) - {"query", "query_id"})
            if unknown:
                return self.fail(f"Code: 115. DB::Exception: chdb_http.py does not emulate {unknown}. (UNKNOWN_SETTING)")
            query = params.get("query", [""])[0]
            sql = f"{query}\n{body}" if query and body else query or body
            if not sql.strip():
                return self.fail("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            try:
                with lock:
                    out = session.query(sql, "TabSeparated").bytes()
            except Exception as e:  # chdb raises ChdbError (a RuntimeError) with the server's text
                return self.fail(str(e))
            self.answer(200, out)

        do_GET = do_POST = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(*_):
        with lock:  # let the running query finish
            session.close()
            sys.stdout.flush()
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"ready: ClickHouse {version} (chdb) on http://127.0.0.1:{args.port}, data in {args.data}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
