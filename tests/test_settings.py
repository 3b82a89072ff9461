"""One Settings object: defaults, CHATEDIT_* env vars over chatedit.toml, readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import SettingsError, describe_settings, environment_of, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("CHATEDIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_a_sqlite_file_and_fs_blobs_under_data_dir(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir == Path("data")
    assert s.blob_store == "fs"
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'chatedit.db'}"


def test_env_vars_override_the_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "chatedit.toml").write_text('data_dir = "/srv/chat"\nblob_store = "db"\nport = 9000\n')
    s = load_settings()
    assert (s.data_dir, s.blob_store, s.port) == (Path("/srv/chat"), "db", 9000)
    monkeypatch.setenv("CHATEDIT_PORT", "9100")
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", "postgresql://u@db.example/chatedit")
    s = load_settings()
    assert s.port == 9100
    assert s.resolved_database_url == "postgresql+psycopg://u@db.example/chatedit", "normalised to psycopg 3"


def test_chatedit_config_names_another_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "conf" / "team.toml"
    other.parent.mkdir()
    other.write_text('blob_store = "db"\n')
    monkeypatch.setenv("CHATEDIT_CONFIG", str(other))
    assert load_settings().blob_store == "db"
    monkeypatch.setenv("CHATEDIT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="missing.toml, which does not exist"):
        load_settings()


def test_bad_values_are_reported_as_sentences_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_BLOB_STORE", "s3")
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "CHATEDIT_BLOB_STORE" in message and "CHATEDIT_DATABASE_URL" in message
    assert "Traceback" not in message


def test_every_setting_is_documented() -> None:
    rows = describe_settings()
    names = {name for name, _, _ in rows}
    assert {"CHATEDIT_DATA_DIR", "CHATEDIT_DATABASE_URL", "CHATEDIT_BLOB_STORE"} <= names
    assert all(description for _, _, description in rows), "every setting says what it is for"
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [name for name in names if name not in readme]
    assert not missing, f"README's configuration table lacks {missing}"


def test_an_empty_segmenter_setting_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_SEGMENTER", "")
    assert load_settings().segmenter is None


def test_a_child_process_environment_loads_the_same_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", torch_compile=True, worker_heartbeat_seconds=2.5,
                             eval_datasets={"mine": str(tmp_path / "mine.json")})
    env = environment_of(settings, {"PATH": "/bin", "CHATEDIT_BLOB_STORE": "db"})
    assert env["PATH"] == "/bin" and env["CHATEDIT_BLOB_STORE"] == "fs"
    assert env["CHATEDIT_DATABASE_URL"] == settings.resolved_database_url
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == settings.model_copy(update={"database_url": settings.resolved_database_url})
