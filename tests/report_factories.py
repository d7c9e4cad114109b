"""Factories for report and stats tests: cells with real HdrHistograms of generated samples.

Latency samples are drawn from a seeded lognormal distribution, recorded into a
real :class:`hdrh.histogram.HdrHistogram` with the lab's range, and encoded the way
the runner stores them, so percentile assertions check real computations.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

from serverlab.results import Cell, RunHeader
from serverlab.histograms import latency_summary, new_histogram
from serverlab.terms import HDR

#: Variant configurations shaped like servers/*.toml plus the runner's limits.
CONFIGS: dict[str, dict[str, Any]] = {
    "werkzeug-single": {"server": "werkzeug", "model": "single", "workers": 1, "threads": 1, "keep_alive": False},
    "werkzeug-threaded": {"server": "werkzeug", "model": "threaded", "workers": 1, "threads": 0, "keep_alive": False},
    "gunicorn-sync": {"server": "gunicorn", "model": "multi-process", "workers": 3, "threads": 1,
                      "keep_alive": False},
    "gunicorn-gthread": {"server": "gunicorn", "model": "threaded", "workers": 1, "threads": 8, "keep_alive": True},
    "gunicorn-gevent": {"server": "gunicorn", "model": "gevent", "workers": 1, "threads": 1, "connections": 1000,
                        "keep_alive": True},
    "uwsgi-threads": {"server": "uwsgi", "model": "process-thread", "workers": 2, "threads": 4,
                      "keep_alive": False},
}


def latency_samples(median_us: float, count: int, seed: int, sigma: float = 0.5) -> np.ndarray:
    """Lognormal response times (µs) with the given median, as integers within the HDR range."""
    rng = np.random.default_rng(seed)
    values = rng.lognormal(mean=np.log(median_us), sigma=sigma, size=count)
    return np.clip(np.rint(values), 1, HDR.highest_us).astype(np.int64)


def histogram_of(samples: Iterable[int]) -> HdrHistogram:
    """A lab-range histogram holding ``samples`` (µs)."""
    hist = new_histogram()
    for value in samples:
        hist.record_value(int(value))
    return hist


def encode(hist: HdrHistogram) -> str:
    """``Cell.hdr`` text of a histogram."""
    data = hist.encode()
    return data.decode("ascii") if isinstance(data, bytes) else data


def make_header(name: str = "unit", run_id: str = "20260101-000000-unit", **experiment: Any) -> RunHeader:
    """A run header with plausible metadata."""
    metadata = {"backend": "local", "host_cores": 8, "cpu_model": "Test CPU @ 3.0GHz", "git_commit": "abc1234",
                "packages": {"flask": "3.1.3", "gunicorn": "27.0.1"}, "started_at": 1_767_225_600.0,
                "server_cpus": 1, "server_memory": "512m", "server_cpuset": "0", "loadgen_cpuset": "1-2"}
    return RunHeader(run_id=run_id, experiment={"name": name, "repetitions": 3, **experiment}, metadata=metadata)


def make_cell(variant: str = "gunicorn-sync", workload: str = "hello", mode: str = "closed", level: int = 8,
              repetition: int = 1, *, rps: float = 1000.0, median_us: float = 5000.0, samples: int = 2000,
              seed: int | None = None, status: str = "ok", error: str | None = None,
              run_id: str = "20260101-000000-unit", **overrides: Any) -> Cell:
    """A cell whose latency figures come from a real histogram of generated samples."""
    if seed is None:
        seed = zlib.crc32(f"{variant}/{workload}/{mode}/{level}/{repetition}".encode())
    config = {**CONFIGS.get(variant, {"model": "single", "workers": 1, "threads": 1, "keep_alive": False}),
              "server_cpus": 1, "server_memory": "512m"}
    fields: dict[str, Any] = {
        "run_id": run_id, "cell_id": f"{variant}/{workload}/{level}/r{repetition}", "variant": variant,
        "workload": workload, "workload_params": {"n": 1000} if workload == "cpu" else {}, "mode": mode,
        "level": level, "users": level if mode == "closed" else 16, "repetition": repetition,
        "order": repetition, "status": status, "error": error, "config": config,
    }
    if status == "ok":
        hist = histogram_of(latency_samples(median_us, samples, seed))
        duration = 10.0
        fields.update(
            started_at=1_767_225_600.0, warmup_s=2.0, duration_s=duration, requests=int(rps * duration),
            failures=0, rps=rps, latency_us=latency_summary(hist), hdr=encode(hist),
            server_cpu_s=rps * duration * 0.0008, server_peak_memory_bytes=60 * 2**20,
            cpu_ms_per_request=0.8, loadgen_cpu_s=3.0, loadgen_cpu_budget=2.0,
        )
        if mode == "requests":
            fields.update(total_time_s=level / rps, requests=level)
        if mode == "open":
            fields.update(open_load={"target_rps": level, "sent": int(level * duration), "late_sends": 0,
                                     "max_lag_ms": 1.0, "fell_behind": False})
    fields.update(overrides)
    return Cell(**fields)


def make_timeline(rps: float, median_us: float, *, warmup_s: float = 2.0, seconds: int = 12,
                  seed: int = 1) -> dict[str, Any]:
    """A per-second timeline (``Cell.timeline``): a warm-up ramp, then ``rps`` ±5%, p99 ~3× the median.

    The last second is partial, as a real run leaves it.
    """
    rng = np.random.default_rng(seed)
    ramp = int(warmup_s)
    counts = [rps * (i + 1) / (ramp + 1) for i in range(ramp)] + [rps * rng.uniform(0.95, 1.05) for _ in range(seconds)]
    p99 = [median_us * 3 * (2.0 - i / max(ramp, 1)) for i in range(ramp)] + \
          [median_us * 3 * rng.uniform(0.9, 1.2) for _ in range(seconds)]
    return {"interval_s": 1.0, "warmup_s": warmup_s, "rps": [int(c) for c in counts] + [int(rps * 0.3)],
            "p99_us": [float(int(v)) for v in p99] + [None]}


def write_results(path: Path, header: RunHeader, cells: Iterable[Cell]) -> Path:
    """Write a results.jsonl file the way ResultsWriter does."""
    lines = [json.dumps(asdict(header), sort_keys=True)] + [cell.to_json() for cell in cells]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
