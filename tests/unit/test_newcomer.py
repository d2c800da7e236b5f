"""What a newcomer hits first: the command line, `langscale dev`, settings that run but not
as meant, a body sent without a JSON content type, and `make` after an interrupted install."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

import langscale
from langscale import telemetry
from langscale.settings import Settings
from langscale_gateway import errors
from langscale_worker.main import startup_warnings

from support import ROOT, langscale_command, langscale_env, wait_until


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = langscale_env("redis://127.0.0.1:1/0")
    return subprocess.run(
        langscale_command(*args), env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"langscale {langscale.__version__}"


def test_hash_key_reads_the_key_from_stdin_not_the_command_line() -> None:
    expected = hashlib.sha256(b"s3cret key").hexdigest()
    assert cli("hash-key", "-", stdin="s3cret key\n").stdout.strip() == expected
    assert cli("hash-key", stdin="s3cret key\n").stdout.strip() == expected
    assert cli("hash-key", "s3cret key").stdout.strip() == expected  # still accepted
    empty = cli("hash-key", stdin="")
    assert empty.returncode == 2 and "empty" in empty.stderr


@pytest.mark.parametrize("command", ["dev", "gateway", "worker", "hash-key"])
def test_help_says_what_a_command_does_and_its_defaults(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert len(text) > 200, text
    if command in ("dev", "gateway"):
        assert "(default: 8000)" in text and "(default: 127.0.0.1)" in text


def test_a_pipeline_named_twice_is_refused() -> None:
    for value in (
        "chat=langscale_worker.pipelines:chat,chat=pipelines_for_tests:sleepy",
        '{"chat": "a:b", "chat": "c:d"}',
    ):
        with pytest.raises(ValidationError, match="'chat' is given twice"):
            Settings(pipelines=value)


def test_a_keyless_openai_provider_is_warned_about() -> None:
    (warning,) = startup_warnings(Settings(llm_provider="openai"))
    assert "LANGSCALE_OPENAI_API_KEY" in warning
    assert startup_warnings(Settings(llm_provider="openai", openai_api_key="sk-x")) == []
    assert startup_warnings(Settings()) == []


def test_console_traces_exporter_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert telemetry.tracing_configured()
    assert isinstance(telemetry._exporter(), ConsoleSpanExporter)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not telemetry.tracing_configured()


class Body(BaseModel):
    input: dict


async def test_a_body_without_a_json_content_type_gets_the_fix() -> None:
    app = FastAPI()
    errors.install(app)

    @app.post("/x")
    async def endpoint(body: Body) -> dict:
        return {}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        form = await client.post("/x", content='{"input": {}}')  # curl -d's default type
        assert form.status_code == 415
        error = form.json()["error"]
        assert error["type"] == "unsupported_media_type"
        assert "Content-Type: application/json" in error["message"]
        typed = await client.post(
            "/x", content='{"input": 1}', headers={"content-type": "application/json"}
        )
        assert typed.status_code == 422  # a JSON body that is wrong stays a 422


def test_langscale_dev_binds_the_worker_health_port_to_loopback_and_says_where(
    tmp_path: Path,
) -> None:
    dev, log, _ = _start_dev(tmp_path)
    try:
        banner = wait_until(
            lambda: (
                (
                    m := re.search(
                        r"worker health and metrics http://127\.0\.0\.1:(\d+)/", log.read_text()
                    )
                )
                and m
            ),
            90,
            interval=0.2,
        )
        worker_port = int(banner.group(1))
        assert worker_port != 9101
        with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/healthz", timeout=5) as r:
            assert r.status == 200
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        if listening:
            bound = [line.split()[3] for line in listening.splitlines()]
            assert f"127.0.0.1:{worker_port}" in bound
            assert f"0.0.0.0:{worker_port}" not in bound and f"*:{worker_port}" not in bound
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(30)


def test_langscale_dev_answers_the_banners_curl_at_once_and_one_ctrl_c_stops_everything(
    tmp_path: Path,
) -> None:
    # Started as a non-interactive shell starts a background job (CI, `make run &`): with
    # SIGINT ignored, which Python's own Ctrl-C handling then leaves ignored.
    dev, log, port = _start_dev(tmp_path, sigint_ignored=True)
    try:
        wait_until(lambda: "langscale is running" in log.read_text(), 90, interval=0.2)
        # The banner comes once a worker has published its pipelines: its curl works now.
        answer = httpx.post(
            f"http://127.0.0.1:{port}/chat/invoke",
            json={"input": {"question": "hello"}},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"] == "You said: hello"
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C: the whole group gets it
        assert dev.wait(30) == 0
        # Gateway, worker and the Redis it started are gone with it.
        wait_until(lambda: not _group_alive(dev.pid), 15, interval=0.2)
        assert "Traceback" not in log.read_text()
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)


def _start_dev(
    tmp_path: Path, sigint_ignored: bool = False
) -> tuple[subprocess.Popen[bytes], Path, int]:
    """`langscale dev` on a free port, in its own process group as a terminal gives it,
    without the session's LANGSCALE_* settings; returns the process, its log and port."""

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    from langscale.localredis import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSCALE_")}
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen(
            langscale_command("dev", "--port", str(port)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
            preexec_fn=ignore_sigint if sigint_ignored else None,
        )
    return dev, log, port


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_recovers_from_an_interrupted_first_install(tmp_path: Path) -> None:
    """A venv left without pip (the first `make` interrupted) is made again, not reused."""
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".tools")], check=True
    )
    assert not (tmp_path / ".tools/bin/pip").exists()
    started = time.monotonic()
    result = subprocess.run(
        ["make", "-C", str(tmp_path), ".tools/bin/uv", f"PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / ".tools/bin/uv").exists(), time.monotonic() - started


def test_make_run_takes_a_port_and_a_host() -> None:
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", "PORT=9123", "HOST=0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "langscale dev --host 0.0.0.0 --port 9123" in dry.stdout, dry.stdout
