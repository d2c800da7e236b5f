"""``langscale autoscale simulate`` end to end: files written, table printed, clear errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from langscale.autoscale.cli import add_parser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAMPLE_CSV = Path(__file__).parents[2] / "examples" / "autoscale" / "arrivals.csv"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="langscale")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["autoscale", "simulate", *argv])
    return int(args.func(args))


def test_simulate_writes_png_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = cli(
        "--chart-values",
        "none",
        "--pattern",
        "step",
        "--rate",
        "200",
        "--step-start",
        "30",
        "--step-end",
        "300",
        "--duration",
        "600",
        "--run-time",
        "1",
        "--slo-queue-seconds",
        "10",
        "--out",
        str(out),
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "time in queue p50/p95/p99" in printed and "replica-minutes" in printed
    png = out / "simulation.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] > 50_000
    assert summary["slo_queue_seconds"] == 10
    assert set(summary["queue_time_seconds"]) == {"p50", "p95", "p99", "max", "mean"}
    assert summary["settings"]["targetPerReplica"] == 80
    assert summary["scale_events_log"][0]["from"] == 1


def test_values_files_and_set(tmp_path: Path) -> None:
    values = tmp_path / "prod.yaml"
    values.write_text("worker:\n  concurrency: 20\n  autoscaling:\n    maxReplicas: 6\n")
    out = tmp_path / "o"
    rc = cli(
        "--chart-values",
        "none",
        "-f",
        str(values),
        "--set",
        "worker.autoscaling.targetUtilization=0.5",
        "--duration",
        "120",
        "--rate",
        "10",
        "--no-plot",
        "--out",
        str(out),
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())["settings"]
    assert (s["concurrency"], s["maxReplicas"], s["targetPerReplica"]) == (20, 6, 10)
    assert s["valuesFiles"] == [str(values)]
    assert not (out / "simulation.png").exists()


def test_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    rc = cli(
        "--chart-values",
        "none",
        "--pattern",
        "burst",
        "--rate",
        "300",
        "--base-rate",
        "50",
        "--burst-every",
        "300",
        "--burst-seconds",
        "60",
        "--duration",
        "900",
        "--sweep-target",
        "0.6,0.8,1.0",
        "--out",
        str(out),
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "replica-min" in printed
    doc = json.loads((out / "sweep.json").read_text())
    assert [r["target_utilization"] for r in doc["results"]] == [0.6, 0.8, 1.0]
    best = doc["recommended_target_utilization"]
    if best is not None:
        assert f"targetUtilization={best:g}" in printed
    assert (out / "simulation.png").read_bytes()[:8] == PNG_MAGIC


def test_csv_pattern(tmp_path: Path) -> None:
    out = tmp_path / "csv"
    rc = cli(
        "--chart-values",
        "none",
        "--pattern",
        "csv",
        "--csv",
        str(SAMPLE_CSV),
        "--set",
        "worker.concurrency=8",
        "--no-plot",
        "--out",
        str(out),
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["runs"] == len(SAMPLE_CSV.read_text().splitlines()) - 1
    assert s["max_replicas"] > 1


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        ("bad.yaml", ["-f", "{bad}"], "not valid YAML"),
        (None, ["-f", "/nonexistent/values.yaml"], "cannot read values file"),
        (None, ["--pattern", "sawtooth"], "unknown pattern 'sawtooth'"),
        ("bad.csv", ["--pattern", "csv", "--csv", "{bad}"], "not a number of seconds"),
        (None, ["--pattern", "csv"], "needs --csv"),
        (None, ["--set", "worker.autoscaling.kind=vpa"], "kind must be hpa or keda"),
        (None, ["--run-time", "lognormal:2"], "bad run time"),
        (None, ["--run-time", "csv"], "need --pattern csv --csv FILE"),
        (None, ["--sweep-target", "abc"], "bad --sweep-target"),
    ],
)
def test_errors_exit_2_with_a_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: str | None,
    argv: list[str],
    message: str,
) -> None:
    bad = tmp_path / (setup or "unused")
    if setup == "bad.yaml":
        bad.write_text("worker: [unclosed\n")
    elif setup == "bad.csv":
        bad.write_text("t\n1.0\n2.0\nsoon\n")
    argv = [a.replace("{bad}", str(bad)) for a in argv]
    rc = cli(
        "--chart-values",
        "none",
        "--duration",
        "60",
        "--no-plot",
        "--out",
        str(tmp_path / "o"),
        *argv,
    )
    assert rc == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "entry", [["langscale.autoscale"], ["langscale.cli", "autoscale"]], ids=["module", "cli"]
)
def test_python_dash_m(tmp_path: Path, entry: list[str]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            *entry,
            "simulate",
            "--chart-values",
            "none",
            "--duration",
            "60",
            "--rate",
            "20",
            "--no-plot",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "summary.json").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            *entry,
            "simulate",
            "--pattern",
            "nope",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "unknown pattern" in bad.stderr


def test_the_main_cli_imports_the_simulator_only_for_autoscale() -> None:
    """`langscale gateway|worker` never import numpy: the service images leave the
    `autoscale` extra out (test_python_dash_m runs `langscale autoscale` itself)."""
    probe = (
        "import sys; from langscale.cli import build_parser; "
        "build_parser().parse_args(['hash-key', 'k']); "
        "print('numpy' in sys.modules, 'matplotlib' in sys.modules)"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert imported.stdout.strip() == "False False"
