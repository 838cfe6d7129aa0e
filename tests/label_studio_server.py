"""A real Label Studio (the registry's label-studio 1.23.2) for the ML backend's end-to-end test: its own
virtual environment, made once and cached (UNETKIT_LABEL_STUDIO_VENV, default
~/.cache/unetkit/label-studio-1.23.2: about 7 minutes the first time), started offline on loopback
(sqlite, no analytics, Sentry or version check) with a user whose legacy API token the test knows."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from serving import wait_healthy

VERSION = "1.23.2"
TOKEN = "unetkit-test-token-0123456789"
USER, PASSWORD = "test@unetkit.local", "unetkit-test-pass"


def venv() -> Path:
    """The cached environment; made (python -m venv + pip install label-studio==VERSION) when missing."""
    path = Path(
        os.environ.get("UNETKIT_LABEL_STUDIO_VENV", Path.home() / ".cache" / "unetkit" / f"label-studio-{VERSION}")
    )
    python = path / "bin" / "python"
    ok = python.is_file() and subprocess.run([python, "-c", "import label_studio"], capture_output=True).returncode == 0
    if not ok:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", f"label-studio=={VERSION}"], check=True, timeout=1800)
    return path


@contextlib.contextmanager
def label_studio(data_dir: Path, port: int, wait_s: float = 300):
    """Yields Label Studio's URL once it answers; its log is data_dir/ls.log."""
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "COLLECT_ANALYTICS": "false",
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "LATEST_VERSION_CHECK": "false",
           "SSRF_PROTECTION_ENABLED": "false", "ML_BLOCK_LOCAL_IP": "false", "DJANGO_DB": "sqlite",
           "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}"}  # fmt: skip
    cmd = [str(venv() / "bin" / "python"), "-m", "label_studio.server", "start", "--no-browser", "--port", str(port),
           "--internal-host", "127.0.0.1", "--username", USER, "--password", PASSWORD, "--user-token", TOKEN,
           "--enable-legacy-api-token", "--data-dir", str(data_dir)]  # fmt: skip
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "ls.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, wait_s, "Label Studio", lambda: (data_dir / "ls.log").read_text()[-3000:], 1.0)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class Api:
    """Label Studio's REST API with the test user's token."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body=None, files: dict[str, bytes] | None = None):
        headers = {"Authorization": f"Token {TOKEN}"}
        data = None
        if files is not None:
            boundary = uuid.uuid4().hex
            parts = [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                f"Content-Type: image/png\r\n\r\n".encode()
                + content
                + b"\r\n"
                for name, content in files.items()
            ]
            data = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()[:2000]}") from None
        return json.loads(text) if text else None
