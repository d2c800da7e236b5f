"""A tiny LangSmith API stand-in for tests: records the runs the ``langsmith`` client posts.

It answers ``GET /info`` as a server without special flags, and takes what the client
sends: ``POST /runs/multipart`` (multipart/form-data, zstd-compressed or not; parts named
``post.<id>``, ``patch.<id>`` and ``post.<id>.<field>``), ``POST /runs/batch`` and single
``POST /runs`` / ``PATCH /runs/<id>`` (JSON). Each run's posts and patches are merged into
one record by id.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langscale.localredis import free_port


class LangSmithReceiver:
    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                data = self.rfile.read(int(self.headers.get("content-length") or 0))
                encoding = self.headers.get("content-encoding", "")
                if encoding == "zstd":
                    import zstandard

                    data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
                elif encoding == "gzip":
                    data = gzip.decompress(data)
                return data

            def do_GET(self) -> None:
                if self.path.startswith("/info"):
                    self._reply(200, {"version": "0.0-test", "batch_ingest_config": {}})
                else:
                    self._reply(404, {"detail": "not found"})

            def do_POST(self) -> None:
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/runs/multipart":
                    receiver._multipart(self.headers.get("content-type", ""), body)
                elif path == "/runs/batch":
                    batch = json.loads(body)
                    for run in batch.get("post") or []:
                        receiver._merge(run)
                    for run in batch.get("patch") or []:
                        receiver._merge(run)
                elif path == "/runs":
                    receiver._merge(json.loads(body))
                self._reply(202, {})

            def do_PATCH(self) -> None:
                run = json.loads(self._body())
                run.setdefault("id", self.path.rsplit("/", 1)[-1])
                receiver._merge(run)
                self._reply(202, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _merge(self, run: dict[str, Any]) -> None:
        with self.lock:
            record = self.runs.setdefault(str(run["id"]), {})
            for key, value in run.items():
                if value is not None:
                    record[key] = value

    def _multipart(self, content_type: str, body: bytes) -> None:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"content-type: {content_type}\r\n\r\n".encode() + body
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            op, _, rest = str(name).partition(".")
            run_id, _, field = rest.partition(".")
            if op not in ("post", "patch") or not run_id:
                continue
            payload = part.get_payload(decode=True) or b""
            value = json.loads(payload) if payload.strip() else None
            if field:
                self._merge({"id": run_id, field: value})
            elif isinstance(value, dict):
                self._merge({**value, "id": run_id})

    def roots(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.runs.values() if not r.get("parent_run_id")]

    def __enter__(self) -> LangSmithReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
