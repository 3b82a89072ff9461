"""`chatedit datasets` end to end on the real seed file: import, list, export for LLaMA-Factory, generate into a
name twice, merge and split; jobs run by the command's own worker; a person who is not an admin is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from finetune.dataset_rows import normalize_request
from jobs.services import Services, datasets
from jobs.services.permissions import local_actor
from tests.team_support import Team, make_team

SEED = Path("/work/shared/data/seed_chat_dataset.json")


def _run(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_help_lists_the_datasets_commands() -> None:
    output = CliRunner().invoke(cli, ["datasets", "--help"]).output
    for command in ("list", "import", "generate", "harvest", "merge", "split", "export"):
        assert f"  {command} " in output


def test_import_the_seed_list_it_and_export_it_for_llama_factory(services: Services, worker_env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    assert _run(worker_env, "datasets", "list").output == \
        "No datasets yet; `chatedit datasets import` or `generate` makes one.\n"
    imported = _run(worker_env, "datasets", "import", str(SEED), "--format", "seed")
    assert imported.exit_code == 0, imported.output
    admin = local_actor(services)
    version = datasets.get_version(services, admin, "seed_chat_dataset")  # the name is the file's stem
    left_out = 2916 - version.row_count
    assert 0 < left_out < 2916 * 0.1, "the seed file is mostly valid; rows that break the contract are left out"
    assert f"Imported {version.row_count:,} rows into seed_chat_dataset@1; {left_out:,} left out." in imported.stdout
    reasons = [line for line in imported.stderr.splitlines() if line.startswith("left out: row ")]
    assert len(reasons) == 20 and "This image has no" in "".join(reasons)

    listing = _run(worker_env, "datasets", "list")
    assert listing.exit_code == 0
    (line,) = [ln for ln in listing.stdout.splitlines() if ln.startswith("seed_chat_dataset@1 ")]
    assert f"{version.row_count:,}" in line and "Imported seed_chat_dataset.json (seed format)" in line
    listed = json.loads(_run(worker_env, "datasets", "list", "--json").stdout)
    assert [(d["name"], [v["rows"] for v in d["versions"]]) for d in listed] == \
        [("seed_chat_dataset", [version.row_count])]
    again = _run(worker_env, "datasets", "import", str(SEED), "--format", "seed")  # the same name: a new version
    assert again.stdout.startswith(f"Imported {version.row_count:,} rows into seed_chat_dataset@2;")
    assert datasets.get_version(services, admin, "seed_chat_dataset", 2).row_count == 2 * version.row_count

    kept = _run(worker_env, "datasets", "import", str(SEED), "--format", "seed", "--name", "everything",
                "--keep-invalid")
    assert kept.exit_code == 0, kept.output
    everything = datasets.get_version(services, admin, "everything")
    assert (everything.row_count, everything.aside_count) == (2916, left_out), "kept, but set aside"

    out = tmp_path / "export"
    exported = _run(worker_env, "datasets", "export", "seed_chat_dataset@1", "--format", "alpaca", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    files = [out / entry["file_name"] for entry in info.values()]
    assert all(f.is_file() for f in files) and all(str(f) in exported.stdout for f in files)
    records = [r for f in files for r in json.loads(f.read_text(encoding="utf-8"))]
    assert len(records) == version.row_count
    requests = {normalize_request(r["instruction"]) for r in records}
    first = json.loads(SEED.read_text(encoding="utf-8"))[0]
    assert normalize_request(first["instruction"]) in requests


def test_generate_into_a_name_twice_then_merge_and_split(services: Services, worker_env: dict[str, str]) -> None:
    for seed in ("1", "2"):
        made = _run(worker_env, "datasets", "generate", "--templates", "200", "--seed", seed, "--name", "synth")
        assert made.exit_code == 0, made.output
    assert made.stdout.splitlines()[-1] == "Generated 200 rows into synth@2."
    admin = local_actor(services)
    first, second = (datasets.get_version(services, admin, "synth", n) for n in (1, 2))
    assert (first.row_count, second.row_count, second.parent_number) == (200, 400, 1)
    assert {r.language for r in datasets.usable_rows(services, admin, "synth")} == {"en", "zh"}

    merged = _run(worker_env, "datasets", "merge", "both", "synth@1", "synth@2", "--seed", "7")
    assert merged.exit_code == 0, merged.output
    both = datasets.get_version(services, admin, "both")
    splits = both.split_counts
    assert both.row_count == sum(splits.values()) <= 400  # synth@1's rows are in synth@2: removed as duplicates
    assert "near-duplicate" in both.note and splits["train"] > splits["val"] > 0 and splits["test"] > 0
    assert merged.stdout.startswith(f"Made both@1: {both.row_count:,} rows, train/val/test "
                                    f"{splits['train']:,}/{splits['val']:,}/{splits['test']:,} ")
    rows = datasets.usable_rows(services, admin, "both")
    train = {r.key for r in rows if r.split == "train"}
    assert not train & {r.key for r in rows if r.split == "test"}, "a test request is never in train"

    split = _run(worker_env, "datasets", "split", "synth", "--seed", "3", "--fractions", "0.5,0.25,0.25")
    assert split.exit_code == 0, split.output
    third = datasets.get_version(services, admin, "synth")
    assert third.number == 3 and third.split_seed == 3 and sum(third.split_counts.values()) == 400
    assert split.stdout == (f"Made synth@3: train/val/test {third.split_counts['train']:,}/"
                            f"{third.split_counts['val']:,}/{third.split_counts['test']:,}.\n")
    assert third.split_counts["train"] < 0.6 * 400

    missing = _run(worker_env, "datasets", "split", "synth@9")
    assert (missing.exit_code, missing.stderr) == (1, "Error: There is no version 9 of dataset 'synth'.\n")


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def test_an_editor_is_refused_and_nothing_is_made(services: Services, team: Team, worker_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    for args in (("datasets", "list"), ("datasets", "import", str(SEED), "--format", "seed"),
                 ("datasets", "generate", "--templates", "10"), ("datasets", "export", "x", "--format", "openai",
                                                                 "-o", str(tmp_path / "x"))):
        refused = _run(worker_env, "--as", "ed", *args)
        assert (refused.exit_code, refused.stderr) == (2, "Error: Ed (editor) may not manage datasets.\n"), args
    assert services.queue.list() == [] and datasets.list_datasets(services, team.admin) == []
    assert _run(worker_env, "--as", "ada", "datasets", "generate", "--templates", "10").exit_code == 0


def test_harvest_with_nothing_approved_says_so(services: Services, worker_env: dict[str, str]) -> None:
    harvested = _run(worker_env, "datasets", "harvest")
    assert harvested.exit_code == 1
    assert harvested.stderr.endswith("failed: No step has been approved in review yet: there is nothing to harvest.\n")
    assert datasets.list_datasets(services, local_actor(services)) == []
