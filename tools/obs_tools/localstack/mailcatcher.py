"""A real SMTP server (aiosmtpd) that keeps every message it receives, for reading the
alert e-mails of the local stack.

Usage:
  python -m obs_tools.localstack.mailcatcher serve --port 1025 --maildir DIR
      [--tls-cert PEM --tls-key PEM] [--auth-user NAME --auth-password-file FILE]
  python -m obs_tools.localstack.mailcatcher list --maildir DIR
  python -m obs_tools.localstack.mailcatcher show N --maildir DIR

Reads no environment variables. Messages are stored one per file (NNNNNN.eml, in
arrival order), written atomically, so readers never see half a message.

With --tls-cert/--tls-key it requires STARTTLS before MAIL, and with --auth-user and
--auth-password-file it requires AUTH (PLAIN or LOGIN, only after STARTTLS), the way
Gmail's smtp.gmail.com:587 does: the tests send Alertmanager's mail through it with
smtp_require_tls and a password file, and with a wrong password.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hmac
import itertools
import logging
import os
import signal
import ssl
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


class PasswordAuthenticator:
    """aiosmtpd authenticator: one user, its password read from a file (as a Secret
    mounts it), compared in constant time."""

    def __init__(self, user: str, password_file: Path) -> None:
        self.user = user.encode()
        self.password = Path(password_file).read_text().strip().encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, self.user)
            and hmac.compare_digest(auth_data.password, self.password)
        )
        login = getattr(auth_data, "login", b"?").decode(errors="replace")
        log.info("AUTH %s as %s: %s", mechanism, login, "accepted" if ok else "refused")
        # handled=False: aiosmtpd then answers a refusal with 535 (its default, True,
        # would leave the client waiting for a reply).
        return AuthResult(success=ok, handled=False)


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


def smtp_options(
    tls_cert: Path | None, tls_key: Path | None, auth_user: str | None, password_file
) -> dict:
    """aiosmtpd.smtp.SMTP's keyword arguments for STARTTLS and AUTH, as asked."""
    options: dict = {}
    if tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
        options.update(tls_context=context, require_starttls=True)
    if auth_user:
        options.update(
            authenticator=PasswordAuthenticator(auth_user, password_file),
            auth_required=True,
            # Never a password in clear: AUTH is offered only once STARTTLS is done.
            auth_require_tls=True,
        )
    return options


def controller_class():
    """aiosmtpd's Controller, serving AUTH LOGIN with the challenges Gmail sends.

    aiosmtpd's own LOGIN challenges are "User Name\\0" and "Password\\0"; Alertmanager's
    client (email.loginAuth) accepts only "Username:" and "Password:", and picks LOGIN
    when the server lists it first, as Gmail's EHLO does. The challenges are SMTP class
    attributes that aiosmtpd documents for overriding.
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class GmailLikeSMTP(SMTP):
        AuthLoginUsernameChallenge = "Username:"
        AuthLoginPasswordChallenge = "Password:"

    class GmailLikeController(Controller):
        def factory(self):
            return GmailLikeSMTP(self.handler, **self.SMTP_kwargs)

    return GmailLikeController


def serve(host: str, port: int, maildir: Path, **smtp: object) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mailcatcher %(message)s")
    options = smtp_options(**smtp)
    controller = controller_class()(MaildirHandler(maildir), hostname=host, port=port, **options)
    controller.start()
    log.info(
        "listening on %s:%d (STARTTLS %s, AUTH %s), storing messages in %s",
        host,
        port,
        "required" if "tls_context" in options else "off",
        "required" if "authenticator" in options else "off",
        maildir,
    )
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
    serve_parser.add_argument("--tls-cert", type=Path, help="PEM certificate: require STARTTLS")
    serve_parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve_parser.add_argument("--auth-user", help="require AUTH as this user")
    serve_parser.add_argument("--auth-password-file", type=Path, help="the user's password")
    list_parser = sub.add_parser("list")
    list_parser.add_argument("--maildir", required=True, type=Path)
    show_parser = sub.add_parser("show")
    show_parser.add_argument("number", type=int)
    show_parser.add_argument("--maildir", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        if bool(args.tls_cert) != bool(args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        if bool(args.auth_user) != bool(args.auth_password_file):
            parser.error("--auth-user and --auth-password-file go together")
        if args.auth_user and not args.tls_cert:
            parser.error("--auth-user needs --tls-cert: AUTH is only offered after STARTTLS")
        serve(
            args.host,
            args.port,
            args.maildir,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            auth_user=args.auth_user,
            password_file=args.auth_password_file,
        )
    elif args.command == "list":
        print(render_listing(args.maildir))
    else:
        print(render_message(args.maildir, args.number))


if __name__ == "__main__":
    main()
