"""The house rules of ../shared/DESIGN.md, checked on the source: rooms, imports, packaging."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).parents[1]
ROOMS = ("app", "core", "jobs", "db", "finetune")
#: Which rooms each room may import (besides itself).
ALLOWED = {
    "app": {"jobs", "db", "core"},
    "finetune": {"core", "db"},
    "jobs": {"db", "core", "finetune"},
    "core": set(),
    "db": set(),
}
HEAVY = {"torch", "diffusers", "transformers", "onnxruntime", "peft", "accelerate"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_top_level_is_exactly_the_rooms_tests_bench_and_docs() -> None:
    dirs = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    dirs -= {"data", "build", "dist"} | {p for p in dirs if p.endswith(".egg-info") or p == "__pycache__"}
    assert dirs == {*ROOMS, "tests", "bench", "docs"}


def test_rooms_import_only_rooms_below_them() -> None:
    problems = []
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            for name in _imports(path) & set(ROOMS) - {room}:
                if name not in ALLOWED[room]:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []


def test_core_has_no_sql_or_streamlit_and_the_app_no_heavy_libraries() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        assert not _imports(path) & {"sqlalchemy", "sqlmodel", "streamlit", "psycopg", "alembic"}, path
    for path in (ROOT / "app").rglob("*.py"):
        assert not _imports(path) & HEAVY, path


def test_the_cli_and_the_submit_api_load_no_heavy_library() -> None:
    code = ("import sys, app.cli, jobs.queue, jobs.services, db.models; "
            f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_onnxruntime_comes_from_exactly_one_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert "onnxruntime" not in base, "the base install must not pull either onnxruntime wheel"
    extras = project["optional-dependencies"]
    assert [d for d in extras["cpu"] if "onnxruntime" in d] == [d for d in extras["cpu"] if d.startswith("onnxruntime>")]
    assert any(d.startswith("onnxruntime-gpu") for d in extras["gpu"])
    assert not any(d.startswith("onnxruntime>") or d == "onnxruntime" for d in extras["gpu"])
    installed = set()
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(name)
            installed.add(name)
        except metadata.PackageNotFoundError:
            pass
    assert len(installed) <= 1, f"both installed: {installed}"


def test_the_cpu_constraints_pin_the_local_torch_build() -> None:
    lines = [ln.strip() for ln in (ROOT / "constraints-cpu.txt").read_text().splitlines()]
    assert "torch==2.13.0" in lines
