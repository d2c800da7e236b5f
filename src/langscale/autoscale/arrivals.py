"""Arrival patterns: sorted arrays of arrival times (seconds from the start).

Rates are runs per second. Arrivals are a (non-homogeneous) Poisson process by default:
per 1-second bin, a Poisson count at the bin's mean rate, placed uniformly in the bin.
``process="uniform"`` gives evenly spaced, deterministic arrivals instead (handy in tests).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

PATTERNS = ("constant", "step", "burst", "diurnal", "csv")
FloatArray = npt.NDArray[np.float64]


class ArrivalError(ValueError):
    """Bad pattern parameters or a bad CSV file."""


@dataclass(frozen=True)
class Pattern:
    kind: str = "constant"
    rate: float = 100.0  # constant rate; step/burst level; diurnal peak
    base_rate: float = 0.0  # outside the step/bursts; diurnal trough
    step_start: float = 60.0
    step_end: float | None = None  # None: until the end
    burst_every: float = 600.0
    burst_seconds: float = 60.0
    period: float | None = None  # diurnal period; None: the duration
    csv_path: str | None = None


def rate_at(pattern: Pattern, t: FloatArray, duration: float) -> FloatArray:
    """Mean arrival rate at times ``t`` (not used for CSV)."""
    k = pattern.kind
    if k == "constant":
        return np.full_like(t, pattern.rate)
    if k == "step":
        end = math.inf if pattern.step_end is None else pattern.step_end
        on = (t >= pattern.step_start) & (t < end)
        return np.where(on, pattern.rate, pattern.base_rate)
    if k == "burst":
        # The last burst_seconds of every burst_every: the run starts at the base rate.
        on = np.mod(t, pattern.burst_every) >= pattern.burst_every - pattern.burst_seconds
        return np.where(on, pattern.rate, pattern.base_rate)
    if k == "diurnal":
        period = pattern.period or duration
        # Trough at t=0, peak at period/2.
        shape = (1 - np.cos(2 * np.pi * t / period)) / 2
        return pattern.base_rate + (pattern.rate - pattern.base_rate) * shape
    raise ArrivalError(f"unknown pattern {k!r}; choose one of {', '.join(PATTERNS)}")


def _validate(pattern: Pattern, duration: float) -> None:
    if pattern.kind not in PATTERNS:
        raise ArrivalError(f"unknown pattern {pattern.kind!r}; choose one of {', '.join(PATTERNS)}")
    if duration <= 0:
        raise ArrivalError("duration must be positive")
    if pattern.rate < 0 or pattern.base_rate < 0:
        raise ArrivalError("rates must not be negative")
    if pattern.kind == "burst" and not 0 < pattern.burst_seconds <= pattern.burst_every:
        raise ArrivalError("burst: need 0 < burst-seconds <= burst-every")
    if pattern.kind == "diurnal" and pattern.period is not None and pattern.period <= 0:
        raise ArrivalError("diurnal: period must be positive")


def generate(
    pattern: Pattern, duration: float, rng: np.random.Generator, process: str = "poisson"
) -> FloatArray:
    """Arrival times in [0, duration), sorted."""
    _validate(pattern, duration)
    if pattern.kind == "csv":
        if not pattern.csv_path:
            raise ArrivalError("pattern csv needs --csv FILE")
        times = read_csv(pattern.csv_path)
        return times[times < duration]
    if process not in ("poisson", "uniform"):
        raise ArrivalError(f"unknown arrival process {process!r} (poisson | uniform)")
    n_bins = math.ceil(duration)
    starts = np.arange(n_bins, dtype=np.float64)
    widths = np.minimum(1.0, duration - starts)
    if process == "uniform":
        # Integrate the rate at 10 ms resolution and emit one arrival per unit of mass.
        fine = np.arange(0.0, duration, 0.01)
        mass = np.cumsum(rate_at(pattern, fine + 0.005, duration) * 0.01)
        total = math.floor(mass[-1] + 1e-9) if len(mass) else 0
        targets = np.arange(total, dtype=np.float64) + 0.5
        idx = np.searchsorted(mass, targets)
        return np.sort(fine[np.minimum(idx, len(fine) - 1)])
    mean = rate_at(pattern, starts + widths / 2, duration) * widths
    counts = rng.poisson(mean)
    total = int(counts.sum())
    offsets = rng.random(total)
    bin_of = np.repeat(starts, counts)
    width_of = np.repeat(widths, counts)
    times = bin_of + offsets * width_of
    times.sort()
    return times


def read_csv(path: str | Path) -> FloatArray:
    """Arrival timestamps (seconds) from the first column of a CSV; a header row is allowed.

    Timestamps are shifted so the first arrival is at 0 if they look absolute (epoch seconds).
    """
    return read_trace(path)[0]


def recorded_run_times(pattern: Pattern) -> FloatArray:
    """Each run's own run time (seconds), from the second column of the pattern's CSV, in
    the order of the sorted arrivals: replays a recorded trace with its real durations."""
    if pattern.kind != "csv" or not pattern.csv_path:
        raise ArrivalError("run times from the CSV need --pattern csv --csv FILE")
    run_times = read_trace(pattern.csv_path)[1]
    if run_times is None:
        raise ArrivalError(
            f"{pattern.csv_path}: --run-time csv needs a run time > 0 (seconds) in the "
            "second column of every row"
        )
    return run_times


def read_trace(path: str | Path) -> tuple[FloatArray, FloatArray | None]:
    """Arrival timestamps (first column) and, when every row has one, run times in seconds
    (second column), both ordered by arrival; see read_csv."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArrivalError(f"cannot read CSV {p}: {exc.strerror or exc}") from exc
    rows: list[tuple[float, float | None]] = []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        cell = row[0].strip()
        try:
            arrival = float(cell)
        except ValueError:
            if lineno == 1 and not rows:
                continue  # header
            raise ArrivalError(f"{p}:{lineno}: not a number of seconds: {cell!r}") from None
        if not math.isfinite(arrival) or arrival < 0:
            raise ArrivalError(f"{p}:{lineno}: timestamp must be a finite number >= 0: {cell!r}")
        rows.append((arrival, _positive_seconds(row[1]) if len(row) > 1 else None))
    if not rows:
        raise ArrivalError(f"{p}: no arrival timestamps found")
    rows.sort(key=lambda r: r[0])
    times = np.asarray([t for t, _ in rows], dtype=np.float64)
    if times[0] > 1e8:  # epoch seconds: make relative
        times = times - times[0]
    recorded = [run for _, run in rows if run is not None]
    if len(recorded) < len(rows):
        return times, None
    return times, np.asarray(recorded, dtype=np.float64)


def _positive_seconds(cell: str) -> float | None:
    try:
        seconds = float(cell)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
