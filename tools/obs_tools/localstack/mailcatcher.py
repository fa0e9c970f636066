"""A real SMTP server (aiosmtpd) that keeps every message it receives, for reading the
alert e-mails of the local stack.

Usage:
  python -m obs_tools.localstack.mailcatcher serve --port 1025 --maildir DIR
  python -m obs_tools.localstack.mailcatcher list --maildir DIR
  python -m obs_tools.localstack.mailcatcher show N --maildir DIR

Reads no environment variables. Messages are stored one per file (NNNNNN.eml, in
arrival order), written atomically, so readers never see half a message.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("mailcatcher")


class MaildirHandler:
    """aiosmtpd handler: accept every recipient, store the raw message."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = Path(maildir)
        self.maildir.mkdir(parents=True, exist_ok=True)
        existing = [int(p.stem) for p in self.maildir.glob("*.eml") if p.stem.isdigit()]
        self._numbers = itertools.count(max(existing, default=0) + 1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            number = next(self._numbers)
        path = self.maildir / f"{number:06d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        os.replace(tmp, path)
        subject = email.message_from_bytes(envelope.content, policy=email.policy.default)["Subject"]
        log.info(
            "stored message %d from %s to %s: %s",
            number,
            envelope.mail_from,
            ",".join(envelope.rcpt_tos),
            subject,
        )
        return "250 Message accepted for delivery"


@dataclass
class Message:
    number: int
    date: str
    sender: str
    to: str
    subject: str
    body: str
    # The HTML alternative, when the message has one (alert mails do).
    html: str = ""


def read_messages(maildir: Path) -> list[Message]:
    messages = []
    for path in sorted(Path(maildir).glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        part = parsed.get_body(preferencelist=("plain", "html"))
        html = parsed.get_body(preferencelist=("html",))
        messages.append(
            Message(
                number=int(path.stem),
                date=str(parsed["Date"] or ""),
                sender=str(parsed["From"] or ""),
                to=str(parsed["To"] or ""),
                subject=" ".join(str(parsed["Subject"] or "").split()),
                body=part.get_content() if part is not None else "",
                html=html.get_content() if html is not None else "",
            )
        )
    return messages


def render_listing(maildir: Path) -> str:
    messages = read_messages(maildir)
    if not messages:
        return f"no messages in {maildir}"
    rows = [f"{m.number:>4}  {m.date:<31}  {m.subject}" for m in messages]
    return "\n".join([f"{'#':>4}  {'date':<31}  subject", *rows])


def render_message(maildir: Path, number: int) -> str:
    for m in read_messages(maildir):
        if m.number == number:
            return f"From: {m.sender}\nTo: {m.to}\nDate: {m.date}\nSubject: {m.subject}\n\n{m.body}"
    raise SystemExit(f"no message {number} in {maildir}")


def serve(host: str, port: int, maildir: Path) -> None:
    from aiosmtpd.controller import Controller

    logging.basicConfig(level=logging.INFO, format="%(asctime)s mailcatcher %(message)s")
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port)
    controller.start()
    log.info("listening on %s:%d, storing messages in %s", host, port, maildir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    controller.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m obs_tools.localstack.mailcatcher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=1025)
    serve_parser.add_argument("--maildir", required=True, type=Path)
    list_parser = sub.add_parser("list")
    list_parser.add_argument("--maildir", required=True, type=Path)
    show_parser = sub.add_parser("show")
    show_parser.add_argument("number", type=int)
    show_parser.add_argument("--maildir", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port, args.maildir)
    elif args.command == "list":
        print(render_listing(args.maildir))
    else:
        print(render_message(args.maildir, args.number))


if __name__ == "__main__":
    main()
