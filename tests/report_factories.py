"""Factories for report and stats tests: cells with real HdrHistograms of generated samples.

Latency samples are drawn from a seeded lognormal distribution, recorded into a
real :class:`hdrh.histogram.HdrHistogram` with the lab's range, and encoded the way
the runner stores them, so percentile assertions check real computations.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

from serverlab.records import VariantRecord
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


#: A variant's configuration when :data:`CONFIGS` has none (a single-threaded server).
DEFAULT_CONFIG: dict[str, Any] = {"model": "single", "workers": 1, "threads": 1, "keep_alive": False}
#: The budget every factory run has (1 server CPU).
BUDGET: dict[str, Any] = {"server_cpus": 1, "server_memory": "512m", "server_cpuset": "0", "loadgen_cpuset": "1-2"}
#: Workload parameters every factory run has.
PARAMS: dict[str, dict[str, int]] = {"hello": {}, "cpu": {"n": 1000}}


def variant_records(configs: dict[str, dict[str, Any]] | None = None) -> dict[str, VariantRecord]:
    """Every declared variant's record (``servers/*.toml`` names), configured as :data:`CONFIGS` says
    (:data:`DEFAULT_CONFIG` for the others), with ``configs`` overriding whole variants."""
    from labapp.variants import load_variants

    names = [*CONFIGS, *(n for n in load_variants() if n not in CONFIGS), *(configs or {})]
    chosen = {name: (configs or {}).get(name, CONFIGS.get(name, DEFAULT_CONFIG)) for name in dict.fromkeys(names)}
    return {name: VariantRecord.from_dict(name, config) for name, config in chosen.items()}


def make_header(name: str = "unit", run_id: str = "20260101-000000-unit", *,
                configs: dict[str, dict[str, Any]] | None = None, **experiment: Any) -> RunHeader:
    """A run header with plausible metadata, the 1-CPU budget, :data:`PARAMS` (updated by
    ``experiment["params"]``) and every variant's record (``configs`` overrides variants)."""
    metadata = {"backend": "local", "host_cores": 8, "cpu_model": "Test CPU @ 3.0GHz", "git_commit": "abc1234",
                "packages": {"flask": "3.1.3", "gunicorn": "27.0.1"}, "started_at": 1_767_225_600.0}
    record = {"name": name, "repetitions": 3, "budget": dict(BUDGET), **experiment,
              "params": {**PARAMS, **experiment.get("params", {})}}
    return RunHeader(run_id=run_id, experiment=record, metadata=metadata, variants=variant_records(configs))


def make_cell(variant: str = "gunicorn-sync", workload: str = "hello", mode: str = "closed", level: int = 8,
              repetition: int = 1, *, rps: float = 1000.0, median_us: float = 5000.0, samples: int = 2000,
              seed: int | None = None, status: str = "ok", error: str | None = None,
              run_id: str = "20260101-000000-unit", **overrides: Any) -> Cell:
    """A cell whose latency figures come from a real histogram of generated samples."""
    if seed is None:
        seed = zlib.crc32(f"{variant}/{workload}/{mode}/{level}/{repetition}".encode())
    fields: dict[str, Any] = {
        "run_id": run_id, "cell_id": f"{variant}/{workload}/{level}/r{repetition}", "variant": variant,
        "workload": workload, "mode": mode, "level": level, "users": level if mode == "closed" else 16,
        "repetition": repetition, "order": repetition, "status": status, "error": error,
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
    lines = [header.to_json()] + [cell.to_json() for cell in cells]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: A recorded calibration-like run: the README's hello rows at 32 users from the quiet 2-core
#: machine (run 20261121-070039-default, 3 repetitions, 1 server CPU, one Locust process):
#: variant -> (Locust RPS, wrk RPS, server CPU ms/request, busiest Locust process share).
#: The server's busy share is RPS × CPU per request, as the run measured it.
CALIBRATION_TABLE = {
    "granian": (10_954, 14_883, 0.081, 0.93),
    "uwsgi-http11": (11_910, 10_996, 0.079, 0.80),
    "uwsgi-threads": (4_233, 10_855, 0.131, 0.99),
    "uwsgi-processes": (4_305, 9_511, 0.131, 0.99),
    "nginx-uwsgi": (6_202, 7_554, 0.154, 0.83),
    "waitress": (5_702, 6_206, 0.169, 0.78),
    "uwsgi-gevent": (4_484, 5_088, 0.147, 0.97),
    "gunicorn-gevent": (4_896, 5_151, 0.202, 0.74),
    "nginx-gunicorn": (4_910, 5_132, 0.198, 0.75),
    "gunicorn-gthread": (4_903, 4_837, 0.198, 0.74),
    "gunicorn-sync": (3_196, 3_741, 0.269, 0.92),
    "werkzeug-single": (2_267, 3_512, 0.300, 0.92),
    "werkzeug-threaded": (2_358, 2_704, 0.401, 0.71),
}
#: The same run's io rows (50 ms sleep, 32 users): variant -> Locust RPS. Every variant waits on
#: the sleep (below saturation): throughput is slots ÷ 50 ms.
DEFAULT_IO_RPS = {"granian": 158, "uwsgi-http11": 617, "uwsgi-threads": 156, "uwsgi-processes": 58.8,
                  "nginx-uwsgi": 58.7, "waitress": 157, "uwsgi-gevent": 584, "gunicorn-gevent": 600,
                  "nginx-gunicorn": 157, "gunicorn-gthread": 156, "gunicorn-sync": 57.5, "werkzeug-single": 19.4,
                  "werkzeug-threaded": 596}
#: Per-repetition factors (Locust RPS, CPU per request, wrk RPS) of the recorded run's spread: a few per cent.
_WOBBLE = ((0.97, 1.02, 0.985), (1.0, 1.0, 1.0), (1.035, 0.98, 1.02))


def calibration_run(run_id: str = "20261121-064956-calibration", *, io: bool = False) -> tuple[RunHeader, list[Cell]]:
    """The header and 39 cells of a 13-variant calibration run, shaped as the runner records them.

    The experiment and each variant's configuration come from the shipped
    ``experiments/calibration.toml`` and ``servers/*.toml``; the figures from
    :data:`CALIBRATION_TABLE`. Generator-bound cells carry the runner's saturation finding,
    every cell its repetition's wrk calibration and a per-second timeline. With ``io`` the run is
    ``default``-like: 39 more cells of the io workload (:data:`DEFAULT_IO_RPS`).
    """
    from serverlab.experiment import load_experiment
    from serverlab.findings import GeneratorSaturated

    experiment = load_experiment("calibration")
    variants = experiment.variants()
    metadata = {"backend": "docker", "host_cores": 2, "cpu_model": "AMD EPYC 7B13", "git_commit": "7f5d647",
                "image": "serverlab:latest", "started_at": 1_795_244_439.0, "limits_enforced": True,
                "loadgen_processes_chosen": "1 (auto: 1 CPU in loadgen_cpuset)",
                "packages": {"flask": "3.1.3", "gunicorn": "27.0.1", "locust": "2.47.0"},
                "quietness_probe": {"measured": True, "seconds": 2.0, "share": 0.01, "server_share": 0.01,
                                    "loadgen_share": 0.0, "steal_s": 0.0, "quiet": True, "threshold": 0.05}}
    record = {**experiment.record(), "seed": 1234, "servers": list(CALIBRATION_TABLE)}  # that run's 13 variants
    if io:
        record.update(name="default", workloads=["hello", "io"], params={"hello": {}, "io": {"ms": 50}})
    header = RunHeader(run_id=run_id, experiment=record, metadata=metadata,
                       variants={name: VariantRecord.from_dict(name, v.record()) for name, v in variants.items()
                                 if name in CALIBRATION_TABLE})
    cells = []
    order = 0
    duration = float(experiment.duration)
    for repetition, (rps_factor, cpu_factor, wrk_factor) in enumerate(_WOBBLE, start=1):
        for variant, (rps, wrk, cpu_ms, locust) in CALIBRATION_TABLE.items():
            order += 1
            value, cost = rps * rps_factor, cpu_ms * cpu_factor
            saturated = locust >= 0.9
            cells.append(make_cell(
                variant, "hello", "closed", 32, repetition, rps=value, median_us=32e6 / value, samples=600,
                run_id=run_id, order=order, duration_s=duration, warmup_s=float(experiment.warmup),
                requests=int(value * duration), server_cpu_s=value * cost / 1000 * duration,
                cpu_ms_per_request=cost, loadgen_cpu_s=locust * duration, loadgen_cpu_budget=1.0,
                loadgen_busiest_share=locust, loadgen_saturated=saturated,
                findings=[GeneratorSaturated(locust, cpu_warning=locust >= 0.97)] if saturated else [],
                calibration={"wrk_rps": wrk * wrk_factor, "locust_rps": value, "ratio": value / (wrk * wrk_factor),
                             "repetition": repetition, "connections": 32, "duration_s": duration,
                             "wrk_cpu_ms_per_request": cost},  # wrk in every repetition, as the runner records it
                timeline=make_timeline(value, 32e6 / value, warmup_s=float(experiment.warmup), seconds=int(duration),
                                       seed=order)))
            if io:
                slow = DEFAULT_IO_RPS[variant] * rps_factor
                cells.append(make_cell(
                    variant, "io", "closed", 32, repetition, rps=slow, median_us=32e6 / slow, samples=300,
                    run_id=run_id, order=order + 100, duration_s=duration,
                    requests=int(slow * duration), server_cpu_s=slow * 0.3 / 1000 * duration, cpu_ms_per_request=0.3,
                    loadgen_cpu_s=0.05 * duration, loadgen_cpu_budget=1.0, loadgen_busiest_share=0.05))
    return header, cells
