"""Process start-up: bad settings and bad pipelines stop a process with a clear message."""

from __future__ import annotations

import subprocess

from support import ROOT, langscale_command, langscale_env


def run_until_exit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_invalid_setting_stops_the_worker_naming_the_variable() -> None:
    env = langscale_env("redis://127.0.0.1:1/0", worker_concurrency="many")
    result = run_until_exit(langscale_command("worker"), env)
    assert result.returncode == 2
    assert "LANGSCALE_WORKER_CONCURRENCY" in result.stderr


def test_invalid_setting_stops_the_gateway_naming_the_variable() -> None:
    env = langscale_env("redis://127.0.0.1:1/0", max_invoke_timeout="-3")
    result = run_until_exit(langscale_command("gateway", "--port", "1"), env)
    assert result.returncode == 2
    assert "LANGSCALE_MAX_INVOKE_TIMEOUT" in result.stderr


def test_malformed_pipelines_setting_is_refused() -> None:
    env = langscale_env("redis://127.0.0.1:1/0", pipelines="chat")
    result = run_until_exit(langscale_command("worker"), env)
    assert result.returncode == 2
    assert "LANGSCALE_PIPELINES" in result.stderr
    assert "name=module:attr" in result.stderr


def test_bad_pipeline_import_path_stops_the_worker() -> None:
    for target, reason in [
        ("no_such_module:thing", "cannot import module 'no_such_module'"),
        ("pipelines_for_tests:missing", "has no 'missing'"),
        ("pipelines_for_tests:not_a_runnable", "not a LangChain Runnable"),
    ]:
        env = langscale_env("redis://127.0.0.1:1/0", pipelines=f"broken={target}")
        result = run_until_exit(langscale_command("worker"), env)
        assert result.returncode != 0
        assert "pipeline 'broken'" in result.stderr
        assert reason in result.stderr
