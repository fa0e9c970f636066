"""Alert e-mail the way Gmail takes it (seed 002: smtp.gmail.com:587, smtp_require_tls,
an app password from a Secret): the real Alertmanager sends the crash-loop alert to a
real SMTP server (aiosmtpd, obs_tools.localstack.mailcatcher) that requires STARTTLS
and then AUTH, with the password read from a file as the Secret mounts it.

Both Alertmanagers the project runs: Debian's (`make demo`) and v0.34.2 (the Kubernetes
image's version, `scripts/bootstrap.sh k8s`). With the right password the mail arrives;
with a wrong one none does, Alertmanager counts the failure in
alertmanager_notifications_failed_total, and the SMTP server logs the refused AUTH.

The configuration is prometheus/alertmanager/alertmanager.yml with only what a user
changes for a real relay: the smarthost, smtp_require_tls, smtp_auth_username and the
password file; plus the test CA in the e-mail receiver's tls_config (Gmail's certificate
needs none: it chains to the system's roots).

Reads CI (through the require_* helpers): with CI=true a missing Alertmanager fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import REPO, alertmanager_binary
from obs_tools.localstack.mailcatcher import read_messages

from tests.e2e.conftest import require_backends
from tests.k8s.conftest import require_k8s_binaries
from tests.support.polling import free_port, poll_until

pytestmark = pytest.mark.e2e

USER = "alerts@obs-stack.example"
PASSWORD = "app-password-0123"
CRASH_LOOP = {
    "labels": {
        "alertname": "PodCrashLooping",
        "severity": "critical",
        "service": "backend",
        "namespace": "obs-apps",
        "pod": "backend-7d9f8-abcde",
        "container": "backend",
    },
    "annotations": {
        "summary": "backend pod backend-7d9f8-abcde is crash looping",
        "description": "3 restarts in 5 minutes.",
        "runbook_url": "http://localhost:3000/d/obs-runbook-crash-looping",
    },
}


def alertmanager_of(kind: str) -> str:
    if kind == "debian":
        require_backends("Alertmanager")
        return shutil.which("prometheus-alertmanager")
    require_k8s_binaries(["alertmanager"])
    return str(alertmanager_binary())


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A CA and a certificate for 127.0.0.1 it signed, made with openssl."""
    directory = tmp_path_factory.mktemp("smtp-tls")
    files = {name: directory / f"{name}.pem" for name in ("ca", "ca-key", "cert", "key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=obs-stack test CA", "-keyout", str(files["ca-key"]),
        "-out", str(files["ca"]),
    )  # fmt: skip
    csr = directory / "cert.csr"
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(files["key"]), "-out", str(csr),
    )  # fmt: skip
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(files["ca"]), "-CAkey",
        str(files["ca-key"]), "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
        "-out", str(files["cert"]),
    )  # fmt: skip
    return files


def alertmanager_config(smtp_port: int, password_file: Path, ca: Path) -> dict:
    directory = REPO / "prometheus" / "alertmanager"
    config = yaml.safe_load((directory / "alertmanager.yml").read_text())
    config["global"].update(
        smtp_smarthost=f"127.0.0.1:{smtp_port}",
        smtp_require_tls=True,
        smtp_auth_username=USER,
        smtp_auth_password_file=str(password_file),
    )
    config["templates"] = [str(directory / t) for t in config.get("templates", [])]
    for receiver in config["receivers"]:
        for email in receiver.get("email_configs", []):
            email["tls_config"] = {"ca_file": str(ca)}
    return config


class Rig:
    """The SMTP server and one Alertmanager, each a managed process with its own log."""

    def __init__(self, workdir: Path, tls: dict[str, Path], binary: str, password: str):
        self.workdir = workdir
        self.maildir = workdir / "mail"
        server_password = workdir / "server-password"
        server_password.write_text(PASSWORD)
        # The file the Secret alertmanager-smtp mounts: the value exactly, no newline
        # (obs-deploy stores SMTP_PASSWORD as given).
        client_password = workdir / "smtp-password"
        client_password.write_text(password)
        smtp_port, self.am_port = free_port(), free_port()
        self.smtp = ManagedProcess(
            "mailcatcher",
            [
                sys.executable, "-m", "obs_tools.localstack.mailcatcher", "serve",
                "--port", str(smtp_port), "--maildir", str(self.maildir),
                "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"]),
                "--auth-user", USER, "--auth-password-file", str(server_password),
            ],
            workdir,
        )  # fmt: skip
        poll_until(
            lambda: "listening on" in self.smtp.tail() or not self.smtp.running(),
            "the SMTP server to listen",
            timeout=30,
            on_timeout=self.smtp.describe_failure,
        )
        assert self.smtp.running(), self.smtp.describe_failure()
        config = workdir / "alertmanager.yml"
        config.write_text(
            yaml.safe_dump(alertmanager_config(smtp_port, client_password, tls["ca"]))
        )
        self.alertmanager = ManagedProcess(
            "alertmanager",
            [
                binary, f"--config.file={config}", f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.am_port}", "--cluster.listen-address=",
            ],
            workdir,
        )  # fmt: skip
        self.alertmanager.wait_http(f"{self.url}/-/ready", ok=lambda r: r.status_code == 200)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.am_port}"

    def fire(self) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=[CRASH_LOOP], timeout=10).raise_for_status()

    def failed_notifications(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("alertmanager_notifications_failed_total")
            and 'integration="email"' in line
        )

    def context(self) -> str:
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=10).text
            counters = [line for line in text.splitlines() if "_notifications_" in line]
        except httpx.HTTPError as error:
            counters = [f"no /metrics: {error}"]
        return "\n".join(
            [self.smtp.describe_failure(), self.alertmanager.describe_failure(), *counters]
        )

    def stop(self) -> None:
        self.alertmanager.stop()
        self.smtp.stop()


@pytest.fixture(params=["debian", "v0.34.2"])
def alertmanager(request):
    return alertmanager_of(request.param)


@pytest.fixture
def rig_factory(tmp_path, tls):
    rigs: list[Rig] = []

    def make(binary: str, password: str) -> Rig:
        rigs.append(Rig(tmp_path, tls, binary, password))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.stop()


def test_the_crash_loop_mail_goes_through_starttls_and_auth(alertmanager, rig_factory):
    rig = rig_factory(alertmanager, PASSWORD)
    rig.fire()
    (mail,) = poll_until(
        lambda: read_messages(rig.maildir),
        "the crash-loop mail through STARTTLS and AUTH",
        timeout=60,
        on_timeout=rig.context,
    )
    assert "PodCrashLooping" in mail.subject and "backend" in mail.subject, mail.subject
    assert f"AUTH PLAIN as {USER}: accepted" in rig.smtp.tail(200) or (
        f"AUTH LOGIN as {USER}: accepted" in rig.smtp.tail(200)
    ), rig.context()
    assert rig.failed_notifications() == 0


def test_a_wrong_password_sends_nothing_and_is_counted(alertmanager, rig_factory):
    rig = rig_factory(alertmanager, "not-the-app-password")
    rig.fire()
    poll_until(
        lambda: rig.failed_notifications() > 0,
        "alertmanager_notifications_failed_total{integration=email} to rise",
        timeout=60,
        on_timeout=rig.context,
    )
    assert f"as {USER}: refused" in rig.smtp.tail(200), rig.context()
    assert read_messages(rig.maildir) == [], "a mail arrived with a wrong password"
