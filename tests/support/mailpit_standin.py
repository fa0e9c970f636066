#!/usr/bin/python3
"""A stand-in for Mailpit v1.22.3 (docker.io/axllent/mailpit:v1.22.3), the mail
catcher of k8s/monitoring/mailcatcher.yaml, for tests on a real node where no registry
is reachable. This one file is both the server, copied into the image and run by
Debian bookworm's python3 with python3-aiosmtpd (it imports nothing else, and nothing
from this repository), and prepare(), which the generic stand-in builder calls to get
the Containerfile lines after FROM.

Reads the environment variables MP_SMTP_BIND_ADDR, MP_UI_BIND_ADDR and MP_MAX_MESSAGES
(only when run as the server; start() takes them as arguments). Any other MP_* variable
makes it refuse to start: it imitates none of them (auth, TLS, webroot, database...),
and silently ignoring one would let a test pass that real Mailpit would fail.

What it imitates, each read at tag v1.22.3 of github.com/axllent/mailpit:
- cmd/root.go: MP_SMTP_BIND_ADDR (l. 237), MP_UI_BIND_ADDR (l. 211) and
  MP_MAX_MESSAGES (l. 188, strconv.Atoi with the error dropped: a bad value is 0);
  config/config.go (l. 23, 26, 40): the defaults "[::]:1025", "[::]:8025" and 500
  messages ("[::]" listens on IPv4 too; without IPv6 this uses 0.0.0.0), 0 or less
  keeping everything (internal/storage/cron.go pruneMessages).
- internal/smtpd/main.go listenAndServe: without MP_SMTP_AUTH* or MP_SMTP_TLS_* no
  AuthHandler and no TLSConfig, so plain SMTP, any sender, any recipient, no AUTH and
  no STARTTLS in EHLO; AUTH and STARTTLS are answered "502 5.5.1 Command not
  implemented" (internal/smtpd/smtpd.go), the 220 greeting is "<hostname> Mailpit
  ESMTP Service ready", a stored message is answered "250 2.0.0 Ok: queued as <ID>"
  and a message Go's mail.ReadMessage refuses "451 4.3.5 Unable to process mail".
  Alertmanager (prometheus/alertmanager/alertmanager.yml: smtp_require_tls false, no
  smtp_auth_username) then sends without STARTTLS or AUTH, which is all this accepts.
  No size limit (MaxSize unset), so aiosmtpd's data_size_limit is off too.
- internal/smtpd/main.go SaveToDatabase: "\\r\\r\\n" becomes "\\r\\n"; Return-Path set
  to the envelope sender; a Message-Id "<shortuuid>@mailpit" added when missing;
  envelope recipients missing from To/Cc/Bcc added to a Bcc header;
  internal/smtpd/smtpd.go makeHeaders: a Received header first.
- server/server.go: /livez and /readyz (any method) answer 200 with an empty body
  (server/handlers/k8healthz.go, k8sready.go); GET/PUT/DELETE /api/v1/messages,
  GET /api/v1/message/{id} ("latest" allowed), .../{id}/headers and .../{id}/raw;
  OPTIONS on /api/v1/... answers a blank 200; an unknown path is gorilla/mux's
  "404 page not found", a known path with another method 405.
- server/apiv1/messages.go: MessagesSummary {total, unread, count, messages_count,
  start, tags, messages}, newest first; server/apiv1/api.go getStartLimit: start and
  limit (default 50) from the query, bad values ignored, limit 0 returning every
  message; DELETE with {"IDs": [...]} deletes those, with anything else everything;
  PUT {"Read": bool, "IDs": [...]} (no IDs: all) and a 400 with the decoder's error
  for a body that is not that JSON; replies "ok" as text/plain.
- server/apiv1/message.go: GET message returns storage.Message and marks it read;
  an unknown ID is a 404 "404 page not found" (apiv1/api.go fourOFour).
- internal/storage/structs.go: MessageSummary {ID, MessageID, Read, From, To, Cc, Bcc,
  ReplyTo, Subject, Created, Tags, Size, Attachments, Snippet} and Message {ID,
  MessageID, From, To, Cc, Bcc, ReplyTo, ReturnPath, Subject, ListUnsubscribe{Header,
  Links, Errors, HeaderPost}, Date, Tags, Text, HTML, Size, Inline, Attachments}, an
  address being net/mail.Address {Name, Address}; internal/storage/messages.go Store,
  List and GetMessage fill them: a missing From is {"Name": "", "Address": ""} in a
  summary and null in a Message, missing address lists are [], IDs are 22-character
  shortuuids, MessageID has its <> trimmed, Created is the arrival in milliseconds,
  Date the Date header or else the arrival; internal/tools/snippets.go CreateSnippet:
  200 bytes of the HTML part's text (internal/html2text) or else the text part,
  whitespace collapsed, "..." when cut.

Known differences: messages live in memory (Mailpit: a SQLite file in /tmp), so this
writes nothing at all; pruning beyond MP_MAX_MESSAGES happens on arrival (Mailpit
prunes once a minute, internal/storage/cron.go dbCron); tags, search, the web UI,
websockets, POP3, relaying and the other API routes are absent; times are printed in
UTC; attachments and text-from-HTML follow Python's email package, not enmime (a
PartID is the part's place in the message's walk, not enmime's dotted path). The
SMTP dialogue is aiosmtpd's apart from the greeting and replies named above (EHLO
lists 8BITMIME and HELP rather than SIZE 0 and ENHANCEDSTATUSCODES). One line per
received message goes to stdout (Mailpit logs it only at debug level). SIGTERM and
SIGINT stop it with exit status 0 (internal/storage/database.go: os.Exit(0)).
`/mailpit readyz` checks /readyz like cmd/readyz.go (the upstream Dockerfile's
HEALTHCHECK); `/mailpit version` and `--version` print "mailpit v1.22.3 (stand-in...)";
other arguments are refused.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

VERSION = "v1.22.3"
DEFAULT_SMTP_BIND = "[::]:1025"
DEFAULT_UI_BIND = "[::]:8025"
DEFAULT_MAX_MESSAGES = 500
KNOWN_ENV = ("MP_SMTP_BIND_ADDR", "MP_UI_BIND_ADDR", "MP_MAX_MESSAGES")
# Where prepare() puts the server in the image; /mailpit (the contract's entrypoint)
# only runs it.
IMAGE_SERVER_PATH = "/usr/local/lib/mailpit-standin/server.py"
SHORTUUID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SNIPPET_BYTES = 200
# The API's request bodies are a few IDs; anything far larger is refused with a 400.
MAX_BODY_BYTES = 1 << 20


# --------------------------------------------------------------------------- storage


def short_id() -> str:
    """22 characters of shortuuid's alphabet from a random UUID, like shortuuid.New()."""
    number, digits = uuid.uuid4().int, []
    for _ in range(22):
        number, digit = divmod(number, len(SHORTUUID_ALPHABET))
        digits.append(SHORTUUID_ALPHABET[digit])
    return "".join(digits)


def go_time(moment: datetime) -> str:
    """time.Time's JSON form (RFC 3339, trailing zeros of the fraction dropped)."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    if fraction:
        text += "." + fraction
    offset = int(moment.utcoffset().total_seconds()) if moment.utcoffset() else 0
    if offset == 0:
        return text + "Z"
    sign, offset = ("-", -offset) if offset < 0 else ("+", offset)
    return f"{text}{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"


class _TextOfHTML(HTMLParser):
    """internal/html2text Strip: the text nodes outside script, style, head...,
    with a space after block elements, <br> and before <img>."""

    SKIP = {"script", "title", "head", "style", "noscript"}
    SPACE_AFTER = {"div", "p", "td", "th", "ul", "ol", "li", "table", "tr", "pre", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in ("br", "img"):
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.SPACE_AFTER or re.fullmatch(r"h[1-6]", tag):
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


def snippet(text: str, html: str) -> str:
    source = html_to_text(html) if html.strip() else " ".join(text.split())
    encoded = source.encode()
    if len(encoded) <= SNIPPET_BYTES:
        return source
    return encoded[:SNIPPET_BYTES].decode(errors="ignore") + "..."


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def addresses(message, name: str) -> list[dict]:
    """A header's addresses as net/mail.Address values; [] when absent or unparsable."""
    try:
        header = message[name]
        found = header.addresses if header is not None else ()
        return [{"Name": a.display_name, "Address": a.addr_spec} for a in found]
    except Exception:  # a header Python cannot read is "no addresses", as in Mailpit
        return []


def sender(message, missing):
    found = addresses(message, "From")
    if found:
        return found[0]
    raw = str(message.get("From", "") or "")
    return {"Name": raw, "Address": ""} if raw else missing


def header(message, name: str) -> str:
    try:
        return str(message.get(name, "") or "")
    except Exception:
        return ""


def body_text(message, subtype: str) -> str:
    try:
        part = message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""
    except Exception:  # an unknown charset or a broken part: no body, not a crash
        return ""


def bodies(message) -> tuple[str, str]:
    """(Text, HTML); like enmime, the text of the HTML part when there is no text."""
    text, html = body_text(message, "plain"), body_text(message, "html")
    return (text or html_to_text(html)), html


def attachments(message) -> tuple[list[dict], list[dict]]:
    """(Inline, Attachments): parts with a file name or Content-ID, by disposition."""
    inline, attached = [], []
    for number, part in enumerate(message.walk()):
        content_id = header(part, "Content-ID").strip().strip("<>")
        if part.is_multipart() or not (part.get_filename() or content_id):
            continue
        payload = part.get_payload(decode=True) or b""
        entry = {
            "PartID": str(number),
            "FileName": part.get_filename() or "",
            "ContentType": part.get_content_type(),
            "ContentID": content_id,
            "Size": len(payload),
        }
        target = attached if part.get_content_disposition() == "attachment" else inline
        target.append(entry)
    return inline, attached


def message_date(message, created: datetime) -> datetime:
    try:
        date = email.utils.parsedate_to_datetime(header(message, "Date"))
    except (TypeError, ValueError, IndexError):
        return created
    return date if date.tzinfo else date.replace(tzinfo=UTC)


@dataclass
class Stored:
    id: str
    raw: bytes
    created: datetime
    summary: dict
    read: bool = False


def summarise(id_: str, raw: bytes, created: datetime) -> dict:
    """storage.MessageSummary as Store and List fill it (Read set when listed)."""
    message = parse(raw)
    text, html = bodies(message)
    return {
        "ID": id_,
        "MessageID": header(message, "Message-ID").strip().strip("<>"),
        "Read": False,
        "From": sender(message, {"Name": "", "Address": ""}),
        "To": addresses(message, "To"),
        "Cc": addresses(message, "Cc"),
        "Bcc": addresses(message, "Bcc"),
        "ReplyTo": addresses(message, "Reply-To"),
        "Subject": header(message, "Subject"),
        "Created": go_time(created),
        "Tags": [],
        "Size": len(raw),
        "Attachments": len(attachments(message)[1]),
        "Snippet": snippet(text, html),
    }


def full_message(stored: Stored) -> dict:
    """storage.Message as GetMessage builds it from the raw message."""
    message = parse(stored.raw)
    text, html = bodies(message)
    inline, attached = attachments(message)
    from_ = sender(message, None)
    return_path = header(message, "Return-Path").strip().strip("<>")
    return {
        "ID": stored.id,
        "MessageID": header(message, "Message-ID").strip().strip("<>"),
        "From": from_,
        "To": addresses(message, "To"),
        "Cc": addresses(message, "Cc"),
        "Bcc": addresses(message, "Bcc"),
        "ReplyTo": addresses(message, "Reply-To"),
        "ReturnPath": return_path or (from_["Address"] if from_ else ""),
        "Subject": header(message, "Subject"),
        "ListUnsubscribe": list_unsubscribe(message),
        "Date": go_time(message_date(message, stored.created)),
        "Tags": [],
        "Text": text,
        "HTML": html,
        "Size": len(stored.raw),
        "Inline": inline,
        "Attachments": attached,
    }


def list_unsubscribe(message) -> dict:
    value = header(message, "List-Unsubscribe")
    links = re.findall(r"<([^>]+)>", value)
    return {
        "Header": value,
        "Links": links,
        "Errors": "",
        "HeaderPost": header(message, "List-Unsubscribe-Post") if value else "",
    }


def canonical_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: "message-id" -> "Message-Id"."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in key.split("-"))


def headers_of(raw: bytes) -> dict:
    """GET .../headers: header name -> values, keys sorted as Go's encoder sorts them."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    found: dict[str, list[str]] = {}
    for key, value in message.items():
        unfolded = " ".join(line.strip() for line in str(value).splitlines())
        found.setdefault(canonical_key(key), []).append(unfolded)
    return dict(sorted(found.items()))


class Mailbox:
    """The messages, oldest first, shared by the SMTP and HTTP threads."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._messages: dict[str, Stored] = {}
        self._lock = threading.Lock()

    def store(self, raw: bytes) -> Stored:
        # Milliseconds, as Mailpit stores Created.
        created = datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, tz=UTC)
        id_ = short_id()
        stored = Stored(id_, raw, created, summarise(id_, raw, created))
        with self._lock:
            self._messages[id_] = stored
            self._prune()
        return stored

    def _prune(self) -> None:
        if self.max_messages < 1:
            return
        while len(self._messages) > self.max_messages:
            del self._messages[next(iter(self._messages))]

    def newest_first(self) -> list[Stored]:
        with self._lock:
            return list(reversed(self._messages.values()))

    def get(self, id_: str) -> Stored | None:
        with self._lock:
            if id_ == "latest":
                return next(reversed(self._messages.values()), None)
            return self._messages.get(id_)

    def delete(self, ids: list[str] | None) -> None:
        with self._lock:
            for id_ in list(self._messages) if ids is None else ids:
                self._messages.pop(id_, None)

    def set_read(self, ids: list[str] | None, read: bool) -> None:
        with self._lock:
            for id_ in ids or list(self._messages):
                if id_ in self._messages:
                    self._messages[id_].read = read

    def summary(self, start: int, limit: int) -> dict:
        messages = self.newest_first()
        page = messages[start : start + limit] if limit > 0 else messages
        listed = [dict(m.summary, Read=m.read) for m in page]
        unread = sum(not m.read for m in messages)
        return {
            "total": len(messages),
            "unread": unread,
            "count": len(listed),
            "messages_count": len(messages),
            "start": start,
            "tags": [],
            "messages": listed,
        }


# ------------------------------------------------------------------------------ SMTP


def header_section_ok(data: bytes) -> bool:
    """Whether Go's mail.ReadMessage would read the header: every line up to the first
    blank one is "Name: value" or a continuation."""
    for line in data.split(b"\r\n"):
        if not line:
            return True
        if line[:1] in (b" ", b"\t"):
            continue
        if not re.match(rb"[!-9;-~]+:", line):
            return False
    return True


def recipients_in_headers(message) -> set[str]:
    found = set()
    for name in ("To", "Cc", "Bcc"):
        found |= {a["Address"].lower() for a in addresses(message, name)}
    return found


def with_mailpit_headers(data: bytes, peer: str, helo: str, mail_from: str, rcpts) -> bytes:
    """The headers Mailpit's smtpd adds before storing (see the module docstring)."""
    data = data.replace(b"\r\r\n", b"\r\n")
    now = email.utils.format_datetime(datetime.now(UTC))
    received = (
        f"Received: from {helo} ({peer} [{peer}])\r\n"
        f"        by {socket.gethostname()} (Mailpit) with SMTP\r\n"
        f"        for <{rcpts[0]}>; {now}\r\n"
    )
    data = received.encode() + data
    message = parse(data)
    if header(message, "Return-Path").strip().strip("<>") != mail_from:
        data = re.sub(rb"(?im)^Return-Path: .*\r?\n", b"", data, count=1)
        data = f"Return-Path: <{mail_from}>\r\n".encode() + data
    if not header(message, "Message-ID").strip().strip("<>"):
        data = f"Message-Id: <{short_id()}@mailpit>\r\n".encode() + data
    known = recipients_in_headers(message)
    missing = [r for r in rcpts if r.lower() not in known]
    if missing:
        data = f"Bcc: {', '.join(missing)}\r\n".encode() + data
    return data


class Handler:
    """aiosmtpd handler: store each message and log one line for it."""

    def __init__(self, mailbox: Mailbox, out) -> None:
        self.mailbox = mailbox
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content or b""
        if not header_section_ok(content):
            return "451 4.3.5 Unable to process mail"
        peer = str((session.peer or ("unknown",))[0])
        data = with_mailpit_headers(
            content, peer, session.host_name or "", envelope.mail_from, envelope.rcpt_tos
        )
        stored = self.mailbox.store(data)
        log(
            self.out,
            f"[smtpd] received ({peer}) from:{envelope.mail_from} "
            f"to:{','.join(envelope.rcpt_tos)} subject:{json.dumps(stored.summary['Subject'])} "
            f"id:{stored.id} ({len(data)} bytes)",
        )
        return f"250 2.0.0 Ok: queued as {stored.id}"


def smtp_class():
    """aiosmtpd's SMTP with Mailpit's replies to AUTH and STARTTLS when neither is
    configured. Imported here so that prepare() runs without aiosmtpd."""
    from aiosmtpd.smtp import SMTP

    class MailpitSMTP(SMTP):
        # Mailpit reads lines of any length; aiosmtpd refuses beyond 1001 bytes.
        line_length_limit = MAX_BODY_BYTES

        async def smtp_AUTH(self, arg):
            await self.push("502 5.5.1 Command not implemented")

        async def smtp_STARTTLS(self, arg):
            await self.push("502 5.5.1 Command not implemented")

    return MailpitSMTP


# ------------------------------------------------------------------------------ HTTP

NOT_FOUND = b"404 page not found\n"
MESSAGE_ROUTE = re.compile(r"/api/v1/message/([^/]+)(/headers|/raw)?")


def go_json(value) -> bytes:
    """json.Encoder's output: compact, HTML-safe escapes, a trailing newline."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode()


def go_atoi(value: str | None) -> int | None:
    return int(value) if value and re.fullmatch(r"[+-]?[0-9]+", value) else None


def start_and_limit(query: str) -> tuple[int, int]:
    """apiv1/api.go getStartLimit: start > 0 and limit > -1 are taken, else 0 and 50."""
    params = parse_qs(query)
    start = go_atoi(params.get("start", [None])[0])
    limit = go_atoi(params.get("limit", [None])[0])
    start = start if start and start > 0 else 0
    return start, (limit if limit is not None and limit > -1 else 50)


def json_field(data, name: str):
    """encoding/json matches a struct field's name case-insensitively."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key.lower() == name.lower():
                return value
    return None


class BadRequest(Exception):
    """A request body that Mailpit's JSON decoder would refuse."""


def ids_in(data) -> list[str] | None:
    """The IDs of a decoded {"IDs": [...]} body; None (all messages) when none."""
    if data is not None and not isinstance(data, dict):
        raise BadRequest("json: cannot unmarshal the request body into a struct")
    ids = json_field(data, "IDs")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise BadRequest("json: cannot unmarshal IDs into []string")
    return ids or None


class ApiHandler(BaseHTTPRequestHandler):
    mailbox: Mailbox  # set on the class made by http_handler()
    # Like the http.Server's ReadTimeout and WriteTimeout (server/server.go).
    timeout = 30
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        """Mailpit logs no HTTP requests; neither does this."""

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_OPTIONS(self):
        self.dispatch("OPTIONS")

    def dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            self.route(method, url.path, url.query)
        except BadRequest as error:
            self.reply(HTTPStatus.BAD_REQUEST, str(error).encode(), "text/plain")

    def route(self, method: str, path: str, query: str) -> None:
        if path in ("/livez", "/readyz"):
            self.reply(HTTPStatus.OK, b"", None)
        elif method == "OPTIONS" and path.startswith("/api/v1/"):
            self.reply(HTTPStatus.OK, b"", "text/plain")
        elif path == "/api/v1/messages":
            self.messages(method, query)
        elif match := MESSAGE_ROUTE.fullmatch(path):
            self.message(method, match.group(1), match.group(2) or "")
        else:
            self.reply(HTTPStatus.NOT_FOUND, NOT_FOUND, "text/plain; charset=utf-8")

    def messages(self, method: str, query: str) -> None:
        if method == "GET":
            start, limit = start_and_limit(query)
            self.reply(HTTPStatus.OK, go_json(self.mailbox.summary(start, limit)))
        elif method == "DELETE":
            self.mailbox.delete(self.ids_to_delete())
            self.reply(HTTPStatus.OK, b"ok", "text/plain")
        elif method == "PUT":
            data = self.json_body()
            ids, read = ids_in(data), json_field(data, "Read")
            if read is not None and not isinstance(read, bool):
                raise BadRequest("json: cannot unmarshal Read into bool")
            self.mailbox.set_read(ids, bool(read))
            self.reply(HTTPStatus.OK, b"ok", "text/plain")
        else:
            self.reply(HTTPStatus.METHOD_NOT_ALLOWED, b"", None)

    def message(self, method: str, id_: str, view: str) -> None:
        if method != "GET":
            self.reply(HTTPStatus.METHOD_NOT_ALLOWED, b"", None)
            return
        stored = self.mailbox.get(id_)
        if stored is None:
            self.reply(HTTPStatus.NOT_FOUND, b"404 page not found", "text/plain; charset=utf-8")
        elif view == "/raw":
            self.reply(HTTPStatus.OK, stored.raw, "text/plain; charset=utf-8")
        elif view == "/headers":
            self.reply(HTTPStatus.OK, go_json(headers_of(stored.raw)))
        else:
            self.mailbox.set_read([stored.id], True)
            self.reply(HTTPStatus.OK, go_json(full_message(stored)))

    def json_body(self):
        """The request's JSON, or BadRequest with a message like Go's decoder's."""
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise BadRequest("invalid request body length")
        raw = self.rfile.read(int(length))
        if not raw.strip():
            raise BadRequest("EOF")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadRequest(f"invalid character in JSON: {error}") from None

    def ids_to_delete(self) -> list[str] | None:
        """DeleteMessages deletes everything when its body does not decode."""
        try:
            return ids_in(self.json_body())
        except BadRequest:
            return None

    def reply(self, status: HTTPStatus, body: bytes, content_type: str | None = None):
        self.send_response(status)
        if content_type is None and body:
            content_type = "application/json"
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def http_handler(mailbox: Mailbox) -> type[ApiHandler]:
    return type("MailboxApiHandler", (ApiHandler,), {"mailbox": mailbox})


# --------------------------------------------------------------------------- running


def log(out, text: str) -> None:
    """A line shaped like Mailpit's logrus lines: INFO[2006/01/02 15:04:05] text."""
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    print(f"INFO[{stamp}] {text}", file=out, flush=True)


def split_address(address: str) -> tuple[str, int]:
    """Go's "host:port" ("[::]:1025", ":1025", "0.0.0.0:1025"); no host is "::"."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad listen address {address!r}: want host:port")
    return (host.strip("[]") or "::"), int(port)


def listen_socket(address: str) -> socket.socket:
    """A listening TCP socket; "::" is dual-stack like Go's, or 0.0.0.0 without IPv6."""
    host, port = split_address(address)
    if host == "::":
        if socket.has_ipv6 and socket.has_dualstack_ipv6():
            try:
                return socket.create_server(
                    ("::", port), family=socket.AF_INET6, dualstack_ipv6=True
                )
            except OSError as error:
                if error.errno not in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL
                    raise
        host = "0.0.0.0"
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


@dataclass
class Running:
    """A started stand-in: its bound addresses, its mailbox, and stop()."""

    smtp_address: tuple[str, int]
    http_address: tuple[str, int]
    mailbox: Mailbox
    _stoppers: list = field(default_factory=list, repr=False)

    def stop(self) -> None:
        while self._stoppers:
            self._stoppers.pop()()


def start_smtp(sock: socket.socket, mailbox: Mailbox, out) -> tuple:
    """Serve SMTP on sock from an asyncio loop in a thread; returns a stop function."""
    loop = asyncio.new_event_loop()
    handler, smtp = Handler(mailbox, out), smtp_class()
    hostname = socket.gethostname()

    def factory():
        return smtp(
            handler,
            hostname=hostname,
            ident="Mailpit ESMTP Service ready",
            data_size_limit=None,
            loop=loop,
        )

    server = loop.run_until_complete(loop.create_server(factory, sock=sock))
    thread = threading.Thread(target=loop.run_forever, name="smtpd", daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(shutdown(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    return stop


async def shutdown(server) -> None:
    server.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await server.wait_closed()


def start_http(sock: socket.socket, mailbox: Mailbox):
    """Serve the API on sock from threads; returns a stop function."""
    server = ThreadingHTTPServer(sock.getsockname()[:2], http_handler(mailbox), False)
    server.socket.close()
    server.socket, server.daemon_threads = sock, True
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="http", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return stop


def start(
    smtp_bind: str = DEFAULT_SMTP_BIND,
    ui_bind: str = DEFAULT_UI_BIND,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    out=None,
) -> Running:
    """Start SMTP and HTTP (port 0 picks a free port, see Running's addresses)."""
    out = out if out is not None else sys.stdout
    mailbox = Mailbox(max_messages)
    smtp_sock, http_sock = listen_socket(smtp_bind), listen_socket(ui_bind)
    running = Running(smtp_sock.getsockname()[:2], http_sock.getsockname()[:2], mailbox)
    try:
        running._stoppers.append(start_smtp(smtp_sock, mailbox, out))
        running._stoppers.append(start_http(http_sock, mailbox))
    except BaseException:
        running.stop()
        smtp_sock.close()
        http_sock.close()
        raise
    log(out, f"[smtpd] starting on {smtp_bind} (no encryption)")
    log(out, f"[http] starting on {ui_bind}")
    return running


def settings_from_env(environ) -> dict:
    """start()'s arguments from the MP_* variables, as cmd/root.go reads them."""
    unknown = sorted(k for k in environ if k.startswith("MP_") and k not in KNOWN_ENV)
    if unknown:
        raise ValueError(f"the Mailpit stand-in does not imitate {', '.join(unknown)}")
    max_messages = environ.get("MP_MAX_MESSAGES", "")
    return {
        "smtp_bind": environ.get("MP_SMTP_BIND_ADDR") or DEFAULT_SMTP_BIND,
        "ui_bind": environ.get("MP_UI_BIND_ADDR") or DEFAULT_UI_BIND,
        # strconv.Atoi's error is dropped: a bad value is 0, which keeps everything.
        "max_messages": (go_atoi(max_messages) or 0) if max_messages else DEFAULT_MAX_MESSAGES,
    }


def readyz(ui_bind: str) -> int:
    """`mailpit readyz` (cmd/readyz.go, the Dockerfile's HEALTHCHECK): 0 when
    http://MP_UI_BIND_ADDR/readyz answers 200, else 1."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{ui_bind}/readyz", timeout=5) as answer:
            return 0 if answer.status == 200 else 1
    except OSError:
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["version"], ["--version"]):
        print(f"mailpit {VERSION} (stand-in, Python {sys.version.split()[0]})")
        return 0
    if argv[:1] == ["readyz"]:
        return readyz(os.environ.get("MP_UI_BIND_ADDR") or DEFAULT_UI_BIND)
    if argv:
        print(f"the Mailpit stand-in takes no arguments but version and readyz: {argv}")
        return 1
    try:
        running = start(**settings_from_env(os.environ))
    except (ValueError, OSError) as error:
        print(f"FATA[{time.strftime('%Y/%m/%d %H:%M:%S')}] {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.set())
    stop.wait()
    print("[db] got terminated signal, shutting down", flush=True)
    running.stop()
    return 0


# ------------------------------------------------------------------------- the image

LAUNCHER = f"""#!/usr/bin/python3 -I
# The Mailpit stand-in's entrypoint; the server is {IMAGE_SERVER_PATH}.
import runpy

runpy.run_path("{IMAGE_SERVER_PATH}", run_name="__main__")
"""


def prepare(context: Path) -> str:
    """Write the server and the /mailpit launcher into the build context; return the
    Containerfile lines that follow FROM (the builder adds USER, ENTRYPOINT...)."""
    folder = Path(context) / "mailpit-standin"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.py").write_text(Path(__file__).read_text())
    (folder / "mailpit").write_text(LAUNCHER)
    return (
        "\n".join(
            [
                # Debian's python3 comes with python3-aiosmtpd; /usr/bin/python3 runs it.
                "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends"
                " python3-aiosmtpd && rm -rf /var/lib/apt/lists/*",
                f"COPY mailpit-standin/server.py {IMAGE_SERVER_PATH}",
                "COPY mailpit-standin/mailpit /mailpit",
                f"RUN chmod 0644 {IMAGE_SERVER_PATH} && chmod 0755 /mailpit"
                " && /usr/bin/python3 -c 'import aiosmtpd.smtp' && /mailpit --version",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
