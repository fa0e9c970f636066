"""The Mailpit stand-in (tests/support/mailpit_standin.py) answers like Mailpit v1.22.3
where our manifests and tests use it: SMTP without AUTH or STARTTLS, the probes, and
the messages API's JSON. Served in-process on 127.0.0.1; the entrypoint's signal
handling and `readyz` are run as a process from the copy prepare() puts in an image's
build context, with `python -I` so that nothing of this repository can be imported."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import EmailMessage

import pytest

from tests.support import mailpit_standin
from tests.support.polling import free_port, poll_until

# The exact field names of storage.MessageSummary and storage.Message at v1.22.3
# (internal/storage/structs.go) and of apiv1.MessagesSummary (server/apiv1/messages.go).
SUMMARY_FIELDS = {
    "ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject",
    "Created", "Tags", "Size", "Attachments", "Snippet",
}  # fmt: skip
MESSAGE_FIELDS = {
    "ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject",
    "ListUnsubscribe", "Date", "Tags", "Text", "HTML", "Size", "Inline", "Attachments",
}  # fmt: skip
LIST_FIELDS = {"total", "unread", "count", "messages_count", "start", "tags", "messages"}


class Standin:
    """A running stand-in and a client for it."""

    def __init__(self, max_messages: int = 500) -> None:
        self.log = io.StringIO()
        self.smtp_port, self.http_port = free_port(), free_port()
        self.running = mailpit_standin.start(
            smtp_bind=f"127.0.0.1:{self.smtp_port}",
            ui_bind=f"127.0.0.1:{self.http_port}",
            max_messages=max_messages,
            out=self.log,
        )

    def send(self, message: EmailMessage, to_addrs=None) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as smtp:
            smtp.send_message(message, to_addrs=to_addrs)

    def request(self, method: str, path: str, body: bytes | None = None):
        """(status, content type, body) of one request."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        request = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.headers.get("Content-Type"), answer.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers.get("Content-Type"), error.read()

    def json(self, path: str):
        status, content_type, body = self.request("GET", path)
        assert (status, content_type) == (200, "application/json"), body
        return json.loads(body)


@pytest.fixture
def standin():
    server = Standin()
    yield server
    server.running.stop()


def alert_mail(subject: str = "[FIRING:1] HighErrorRate backend") -> EmailMessage:
    """Shaped like Alertmanager's mail: a text and an HTML alternative."""
    message = EmailMessage()
    message["From"] = "Alertmanager <alertmanager@obs-stack.local>"
    message["To"] = "oncall@obs-stack.local, Second <second@obs-stack.local>"
    message["Subject"] = subject
    message["Date"] = "Tue, 01 Dec 2026 10:20:30 +0100"
    message.set_content("HighErrorRate is firing for backend.\n")
    message.add_alternative(
        "<html><head><style>p{}</style></head><body><p>Firing</p></body>", subtype="html"
    )
    return message


def test_probes_answer_200_with_an_empty_body(standin):
    for path in ("/livez", "/readyz"):
        assert standin.request("GET", path) == (200, None, b"")


def test_a_mail_is_listed_with_mailpits_summary_fields(standin):
    standin.send(alert_mail(), to_addrs=["oncall@obs-stack.local", "hidden@obs-stack.local"])
    listing = standin.json("/api/v1/messages")
    assert set(listing) == LIST_FIELDS
    assert (listing["total"], listing["unread"], listing["count"]) == (1, 1, 1)
    assert (listing["messages_count"], listing["start"], listing["tags"]) == (1, 0, [])
    [summary] = listing["messages"]
    assert set(summary) == SUMMARY_FIELDS
    assert summary["Subject"] == "[FIRING:1] HighErrorRate backend"
    assert [a["Address"] for a in summary["To"]] == [
        "oncall@obs-stack.local",
        "second@obs-stack.local",
    ]
    assert summary["To"][1] == {"Name": "Second", "Address": "second@obs-stack.local"}
    assert summary["From"] == {"Name": "Alertmanager", "Address": "alertmanager@obs-stack.local"}
    # An envelope recipient missing from the headers is added to Bcc, as smtpd does.
    assert summary["Bcc"] == [{"Name": "", "Address": "hidden@obs-stack.local"}]
    assert (summary["Cc"], summary["ReplyTo"], summary["Tags"]) == ([], [], [])
    assert summary["Read"] is False and summary["Attachments"] == 0
    assert summary["Snippet"] == "Firing"
    assert re.fullmatch(r"[2-9A-HJ-NP-Za-km-z]{22}", summary["ID"])
    assert summary["MessageID"].endswith("@mailpit")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z", summary["Created"])


def test_a_mail_reads_back_with_its_bodies_and_is_then_read(standin):
    standin.send(alert_mail())
    [summary] = standin.json("/api/v1/messages")["messages"]
    message = standin.json(f"/api/v1/message/{summary['ID']}")
    assert set(message) == MESSAGE_FIELDS
    assert message["Subject"] == summary["Subject"]
    assert "HighErrorRate is firing for backend." in message["Text"]
    assert "<p>Firing</p>" in message["HTML"]
    assert message["ReturnPath"] == "alertmanager@obs-stack.local"
    assert message["Date"] == "2026-12-01T10:20:30+01:00"
    assert (message["Inline"], message["Attachments"]) == ([], [])
    assert standin.json("/api/v1/message/latest")["ID"] == summary["ID"]
    listing = standin.json("/api/v1/messages")
    assert listing["unread"] == 0 and listing["messages"][0]["Read"] is True
    headers = standin.json(f"/api/v1/message/{summary['ID']}/headers")
    assert headers["Subject"] == [summary["Subject"]] and "Received" in headers


def test_one_line_is_logged_per_received_message(standin):
    standin.send(alert_mail("first"))
    standin.send(alert_mail("second"))
    received = [line for line in standin.log.getvalue().splitlines() if "received" in line]
    assert len(received) == 2 and '"second"' in received[1]


def test_the_oldest_messages_are_pruned_beyond_max_messages():
    server = Standin(max_messages=2)
    try:
        for subject in ("one", "two", "three"):
            server.send(alert_mail(subject))
        listing = server.json("/api/v1/messages")
    finally:
        server.running.stop()
    assert listing["total"] == 2
    assert [m["Subject"] for m in listing["messages"]] == ["three", "two"]


def test_start_and_limit_page_newest_first_and_bad_values_are_ignored(standin):
    for subject in ("one", "two", "three"):
        standin.send(alert_mail(subject))

    def subjects(query):
        return [m["Subject"] for m in standin.json(f"/api/v1/messages?{query}")["messages"]]

    assert subjects("start=1&limit=1") == ["two"]
    assert subjects("start=x&limit=-5") == ["three", "two", "one"]
    assert subjects("start=2&limit=0") == ["three", "two", "one"]


def test_unknown_ids_paths_and_methods_are_refused(standin):
    assert standin.request("GET", "/api/v1/message/nosuchid")[0] == 404
    assert standin.request("GET", "/api/v1/message/latest")[0] == 404
    assert standin.request("GET", "/api/v1/nothing")[::2] == (404, b"404 page not found\n")
    assert standin.request("POST", "/api/v1/messages", b"{}")[0] == 405


def test_bad_requests_are_400_and_the_server_keeps_serving(standin):
    status, _, body = standin.request("PUT", "/api/v1/messages", b"{not json")
    assert status == 400 and body
    assert standin.request("PUT", "/api/v1/messages", b'{"IDs": "x"}')[0] == 400
    with socket.create_connection(("127.0.0.1", standin.http_port), timeout=10) as raw:
        raw.sendall(b"PUT /api/v1/messages HTTP/1.1\r\nContent-Length: many\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", standin.http_port), timeout=10) as raw:
        raw.sendall(b"\x00\xff garbage\r\n\r\n")
        assert raw.recv(100)
    assert standin.request("GET", "/readyz")[0] == 200


def test_delete_removes_the_given_ids_or_everything(standin):
    for subject in ("one", "two", "three"):
        standin.send(alert_mail(subject))
    first = standin.json("/api/v1/messages")["messages"][-1]["ID"]
    body = json.dumps({"IDs": [first]}).encode()
    assert standin.request("DELETE", "/api/v1/messages", body)[::2] == (200, b"ok")
    assert standin.json("/api/v1/messages")["total"] == 2
    assert standin.request("DELETE", "/api/v1/messages")[0] == 200
    assert standin.json("/api/v1/messages")["total"] == 0


def test_smtp_offers_no_auth_or_starttls_and_accepts_mail_without(standin):
    with smtplib.SMTP(timeout=10) as smtp:
        code, greeting = smtp.connect("127.0.0.1", standin.smtp_port)
        assert code == 220 and greeting.endswith(b" Mailpit ESMTP Service ready")
        smtp.ehlo()
        assert not smtp.has_extn("auth") and not smtp.has_extn("starttls")
        assert smtp.docmd("AUTH", "PLAIN AGEAYQ==") == (502, b"5.5.1 Command not implemented")
        assert smtp.docmd("STARTTLS")[0] == 502
        refused = smtp.sendmail("a@x.local", ["b@x.local"], b"Subject: s\r\n\r\nbody\r\n")
    assert refused == {}
    assert standin.json("/api/v1/messages")["total"] == 1


def test_a_message_go_cannot_parse_is_refused_with_451(standin):
    smtp = smtplib.SMTP("127.0.0.1", standin.smtp_port, timeout=10)
    with smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail("a@x.local", ["b@x.local"], b"no header here\r\n\r\nbody\r\n")
    assert refused.value.smtp_code == 451
    assert standin.json("/api/v1/messages")["total"] == 0


def test_settings_come_from_mailpits_variables():
    defaults = mailpit_standin.settings_from_env({})
    assert defaults == {"smtp_bind": "[::]:1025", "ui_bind": "[::]:8025", "max_messages": 500}
    custom = mailpit_standin.settings_from_env(
        {"MP_SMTP_BIND_ADDR": "0.0.0.0:1025", "MP_MAX_MESSAGES": "x", "PATH": "/bin"}
    )
    assert custom["smtp_bind"] == "0.0.0.0:1025" and custom["max_messages"] == 0
    with pytest.raises(ValueError, match="MP_SMTP_AUTH"):
        mailpit_standin.settings_from_env({"MP_SMTP_AUTH": "user:pass"})


def test_prepare_writes_a_server_that_imports_only_the_stdlib_and_aiosmtpd(tmp_path):
    lines = mailpit_standin.prepare(tmp_path)
    assert "apt-get install -y -qq --no-install-recommends python3-aiosmtpd" in lines
    assert f"COPY mailpit-standin/server.py {mailpit_standin.IMAGE_SERVER_PATH}" in lines
    assert "FROM" not in lines and "USER" not in lines and "ENTRYPOINT" not in lines
    launcher = (tmp_path / "mailpit-standin" / "mailpit").read_text()
    assert launcher.startswith("#!/usr/bin/python3")
    server = (tmp_path / "mailpit-standin" / "server.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(server)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"aiosmtpd"}


def run_server(tmp_path, env=None):
    """The prepared server.py under `python -I` (no PYTHONPATH, no cwd on sys.path),
    and an environment without MP_* variables but env's."""
    mailpit_standin.prepare(tmp_path)
    command = [sys.executable, "-I", str(tmp_path / "mailpit-standin" / "server.py")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MP_")}
    return command, dict(clean, **(env or {}))


def test_the_entrypoint_serves_from_the_environment_and_exits_0_on_sigterm(tmp_path):
    smtp, http = free_port(), free_port()
    env = {"MP_SMTP_BIND_ADDR": f"127.0.0.1:{smtp}", "MP_UI_BIND_ADDR": f"127.0.0.1:{http}"}
    command, env = run_server(tmp_path, env=env)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        poll_until(
            lambda: subprocess.run([*command, "readyz"], env=env, timeout=30).returncode == 0,
            "the stand-in's /readyz",
            timeout=20,
        )
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, output
    assert f"[smtpd] starting on 127.0.0.1:{smtp}" in output
    assert subprocess.run([*command, "readyz"], env=env, timeout=30).returncode == 1


def test_the_entrypoint_prints_its_version_and_refuses_unknown_settings(tmp_path):
    command, env = run_server(tmp_path)
    version = subprocess.run([*command, "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.startswith("mailpit v1.22.3 (stand-in")
    refused = subprocess.run(
        command, env=dict(env, MP_UI_AUTH="a:b"), capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 1 and "MP_UI_AUTH" in refused.stderr
