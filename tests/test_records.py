"""The typed record from the load generator to the report (issue 17): results schema 4, the
migrations of files of versions 1-3, golden reports, and runs that disagree being refused.

The fixtures ``tests/data/results-v1.jsonl``, ``-v2`` and ``-v3`` were written by the serverlab
of those schema versions (``tests/report_factories.py`` at commits 52604e9^, d722475^ and
5b1f8b4, through ``write_results``); ``tests/data/golden/<fixture>/summary.md`` and
``index.html`` are their reports rendered by the serverlab before schema 4 (main at 203497e).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from report_factories import make_cell, make_header, write_results
from serverlab import cli
from serverlab.records import Bottleneck, Interference, OpenLoad, Timeline, VariantRecord
from serverlab.report import compare, write_report
from serverlab.report.files import load_results, planned_cell_count
from serverlab.resultrecords import SCHEMA_VERSION, Cell
from serverlab.results import read_results
from serverlab.runmatch import COMPARABLE, RunsDisagree
from serverlab.terms import BottleneckClass

DATA = Path(__file__).parent / "data"
FIXTURES = ["results-v1", "results-v2", "results-v3", "calibration-subset-20261201"]


@pytest.mark.parametrize("name", FIXTURES)
def test_old_results_files_render_byte_identical_to_their_golden_reports(tmp_path, name):
    """Files of every older schema version read through the migrations and render as they did."""
    paths = write_report([DATA / f"{name}.jsonl"], tmp_path)
    golden = DATA / "golden" / name
    assert paths["markdown"].read_text() == (golden / "summary.md").read_text()
    assert paths["html"].read_text() == (golden / "index.html").read_text()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_cells_of_versions_1_to_3_move_their_config_into_the_header(version):
    header, cells = read_results(DATA / f"results-v{version}.jsonl")
    assert {c.version for c in cells} == {version} and header.version == version
    # each variant's configuration once, the budget once, the workload parameters once
    assert set(header.variants) == {c.variant for c in cells}
    assert header.variant("gunicorn-gthread").threads == 8 and header.variant("gunicorn-gthread").keep_alive is True
    assert header.budget is not None and header.budget.server_cpus == 1 and header.budget.server_memory == "512m"
    assert header.workload_params("cpu") == {"n": 1000} and header.workload_params("hello") == {}
    assert planned_cell_count(header.experiment) == len(cells) == 32


def test_a_schema_4_file_stores_variants_budget_and_params_once(tmp_path):
    header = make_header(servers=["gunicorn-sync"], workloads=["cpu"], levels=[8], repetitions=2)
    path = write_results(tmp_path / "results.jsonl", header, [make_cell("gunicorn-sync", "cpu", repetition=r)
                                                              for r in (1, 2)])
    head, *lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert head["version"] == SCHEMA_VERSION == 4 and head["variants"]["gunicorn-sync"]["workers"] == 3
    assert head["experiment"]["budget"]["server_cpus"] == 1 and head["experiment"]["params"]["cpu"] == {"n": 1000}
    assert all("config" not in line and "workload_params" not in line for line in lines)
    # no dict-typed field in a cell but the percentile map
    dict_fields = [f.name for f in dataclasses.fields(Cell) if str(f.type).startswith("dict")]
    assert dict_fields == ["latency_us"]
    read_header, cells = read_results(path)
    assert read_header.variants == header.variants and read_header.budget == header.budget
    assert [c.to_json() for c in cells] == [json.dumps(line, sort_keys=True) for line in lines]


def test_records_read_back_what_they_wrote():
    records = [Interference(share=0.3, flagged=True, threshold=0.05, server_share=0.3, loadgen_share=0.01),
               Bottleneck(BottleneckClass.SERVER_BOUND, "server at 98% of its CPU budget", 0.98, 0.7, 0.0),
               OpenLoad(target_rps=500, sent=3000, late_sends=2, max_lag_ms=7.5, fell_behind=False,
                        achieved_send_rps=499.0),
               Timeline(1.0, 2.0, (100, 200), (900.0, None))]
    for record in records:
        assert type(record).from_dict(json.loads(json.dumps(record.to_dict()))) == record
    variant = VariantRecord.from_dict("x", {"model": "threaded", "workers": 2, "threads": 4, "settings": {"a": 1}})
    assert variant.slots == 8 and VariantRecord.from_dict("x", variant.to_dict()) == variant


def _two_runs(tmp_path, **second):
    one = make_header(run_id="20260101-000000-one", servers=["gunicorn-sync"], workloads=["hello"], levels=[8],
                      repetitions=1)
    two = dataclasses.replace(one, run_id="20260102-000000-two", **second)
    paths = []
    for header in (one, two):
        cells = [make_cell("gunicorn-sync", run_id=header.run_id)]
        paths.append(write_results(tmp_path / f"{header.run_id}.jsonl", header, cells))
    return paths


def test_merging_runs_that_disagree_on_the_budget_is_refused_naming_key_and_values(tmp_path):
    header = make_header()
    experiment = {**header.experiment, "budget": {**header.experiment["budget"], "server_cpus": 0.5}}
    old, new = _two_runs(tmp_path, experiment=experiment)
    with pytest.raises(RunsDisagree, match=r"budget.server_cpus: 1 then 0.5.*--compare budget"):
        load_results([old, new])
    with pytest.raises(RunsDisagree, match=r"budget.server_cpus: 1 then 0.5"):
        compare(old, new)
    text = compare(old, new, ["budget"])  # asked to compare exactly that
    assert "- compared (budget): budget.server_cpus 1 → 0.5" in text


def test_runs_that_disagree_on_image_or_variant_settings_are_refused(tmp_path):
    header = make_header()
    variants = {**header.variants, "gunicorn-sync": dataclasses.replace(header.variants["gunicorn-sync"], workers=5)}
    old, new = _two_runs(tmp_path, variants=variants, metadata={**header.metadata, "image": "sha256:bbb"})
    data = [json.loads(line) for line in old.read_text().splitlines()]
    data[0]["metadata"]["image"] = "sha256:aaa"
    old.write_text("\n".join(json.dumps(line, sort_keys=True) for line in data) + "\n")
    with pytest.raises(RunsDisagree) as info:
        compare(old, new)
    assert "image: 'sha256:aaa' then 'sha256:bbb'" in str(info.value)
    assert "variant gunicorn-sync: workers: 3 then 5" in str(info.value)
    assert "--compare image --compare variants" in str(info.value)
    assert "variant gunicorn-sync: workers 3 → 5" in compare(old, new, ["image", "variants"])


def test_compare_names_the_valid_values_of_compare(tmp_path, capsys):
    old, new = _two_runs(tmp_path)
    assert cli.main(["compare", str(old), str(new), "--compare", "speed"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'speed'" in err and ", ".join(COMPARABLE) in err
    assert cli.main(["compare", str(old), str(new)]) == 0
