"""A recording HTTP server on this machine that answers as Elasticsearch or Kibana
would, for the Jobs' scripts (tests/k8s/test_job_scripts.py runs them with the host's
bash and curl; tests/k8s/test_real_node.py runs them as Jobs on the real node, where
Kibana cannot run), and Kibana 8's /api/status answers.

Reads no environment variables.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    """An HTTP server answering each request with respond(method, path, body)."""

    def __init__(
        self, respond: Callable[[str, str, bytes], tuple[int, dict]], host: str = "127.0.0.1"
    ):
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                status, answer = respond(self.command, self.path, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = handle_one

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def kibana_status(overall: str, saved_objects: str) -> dict:
    """An /api/status answer shaped as Kibana 8 gives it (v8 format): the levels of the
    whole, of core's services and of each plugin (a long list, with nested objects)."""
    plugins = {
        f"plugin{i}": {"level": "available", "summary": "All services are available"}
        for i in range(200)
    }
    # A plugin whose name starts like core's service must not count as it.
    plugins["savedObjectsTagging"] = {"level": "available", "summary": "ok"}
    plugins["fleet"] = {
        "level": "degraded" if overall == "degraded" else "available",
        "summary": "Fleet is setting up",
        "meta": {"error": {"message": "x"}},
    }
    return {
        "name": "kibana",
        "version": {"number": "8.19.4"},
        "status": {
            "overall": {"level": overall, "summary": f"Kibana is {overall}"},
            "core": {
                "elasticsearch": {"level": "available", "summary": "ok", "meta": {}},
                "savedObjects": {
                    "level": saved_objects,
                    "summary": "SavedObjects service has completed migrations",
                    "meta": {"migratedIndices": {"migrated": 0, "skipped": 0, "patched": 8}},
                },
            },
            "plugins": plugins,
        },
    }


def kibana(level="available", import_answer=None, saved_objects=None, http_status=200):
    if saved_objects is None:
        saved_objects = level

    def respond(method, path, body):
        if path == "/api/status":
            return http_status, kibana_status(level, saved_objects)
        return 200, import_answer or {"success": True, "successCount": 11}

    return respond
