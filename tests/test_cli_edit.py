"""`chatedit plan`, `chatedit edit` and `chatedit eval planner`: the headless contract our own checks rely on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from app.cli import cli
from core.recipes import read_recipe

SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"


def _invoke(env: dict[str, str], *args: str):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output + (result.stderr or "")
    return result


def _photo(path: Path) -> Path:
    image = np.zeros((64, 80, 3), dtype=np.uint8)
    image[:] = (60, 90, 140)
    image[10:40, 20:60] = (200, 80, 60)
    Image.fromarray(image).save(path)
    return path


def test_plan_prints_the_validated_commands_as_json(worker_env: dict[str, str]) -> None:
    result = _invoke(worker_env, "plan", "--planner", "rules", "--labels", "Background,Hair,Upper-clothes,Face",
                     "make the shirt white and blur the background")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"command": "recolor", "paras": [["Upper-clothes"], "white"]},
        {"command": "blur", "paras": [["Background"], 0.5]},
    ]


def test_plan_says_on_stderr_what_it_left_out_and_still_exits_0(worker_env: dict[str, str]) -> None:
    result = _invoke(worker_env, "plan", "--labels", "Background,Face", "remove the hat")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "Hat" in result.stderr


def test_edit_with_a_request_writes_a_brighter_png_with_its_recipe(worker_env: dict[str, str], tmp_path: Path) -> None:
    source = _photo(tmp_path / "in.png")
    out = tmp_path / "out" / "edited.png"
    result = _invoke(worker_env, "edit", str(source), "--request", "make it brighter", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Job " in result.stdout and "queue" in result.stdout and "op" in result.stdout
    before = np.asarray(Image.open(source).convert("L"), dtype=float).mean()
    after = np.asarray(Image.open(out).convert("L"), dtype=float).mean()
    assert after > before + 3
    recipe = read_recipe(out.read_bytes())
    assert recipe["commands"] == [{"command": "adjust", "paras": ["brightness", 0.3, []]}]
    assert recipe["backend"] == "classical" and "params" in recipe and "seed" in recipe
    assert not recipe.get("timings"), "timings differ from run to run; they are the job's, not the image's"


def test_edit_with_commands_and_a_selection(worker_env: dict[str, str], tmp_path: Path) -> None:
    source = _photo(tmp_path / "in.png")
    mask = np.zeros((64, 80), dtype=np.uint8)
    mask[10:40, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    commands = json.dumps([{"command": "recolor", "paras": [["Selection"], "green"]}])
    result = _invoke(worker_env, "edit", str(source), "--commands", commands, "--selection", str(tmp_path / "mask.png"),
                     "-o", str(out))
    assert result.exit_code == 0, result.output
    edited = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert edited[25, 40, 1] > edited[25, 40, 0]
    assert np.array_equal(edited[55:, :], np.asarray(Image.open(source).convert("RGB")).astype(int)[55:, :])


def test_edit_with_a_generative_command_fails_naming_the_setting(worker_env: dict[str, str], tmp_path: Path) -> None:
    source = _photo(tmp_path / "in.png")
    commands = json.dumps([{"command": "style", "paras": ["watercolor"]}])
    result = _invoke(worker_env, "edit", str(source), "--commands", commands, "-o", str(tmp_path / "out.png"))
    assert result.exit_code == 1
    assert "CHATEDIT_BASE_MODEL" in result.output
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--commands", "not json"], "not a JSON list"),
        (["--commands", '[{"command": "recolor", "paras": [["Hair"], "bleu"]}]'], "not a colour"),
        (["--request", "frobnicate"], "no commands"),
    ],
)
def test_edit_mistakes_are_one_sentence(worker_env: dict[str, str], tmp_path: Path, args: list[str],
                                        message: str) -> None:
    source = _photo(tmp_path / "in.png")
    result = _invoke(worker_env, "edit", str(source), *args, "-o", str(tmp_path / "out.png"))
    assert result.exit_code == 1
    assert message in result.output


def test_edit_refuses_a_file_that_is_not_an_image(worker_env: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "drawing.png"
    fake.write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    result = _invoke(worker_env, "edit", str(fake), "--request", "make it brighter", "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 1
    assert "SVG" in result.output


def _tiny_dataset(path: Path) -> Path:
    labels = "分割得到的标签有:\n1. Background\n2. Hair\n3. Upper-clothes\n4. Face"
    rows = [
        {"instruction": "将背景更换为海滩", "input": "",
         "output": '[{"command": "change", "paras": [["Background"], "beach"]}]',
         "history": [["我更改了图片，新的图片有哪些部分？", labels]]},
        {"instruction": "把上衣换成白色", "input": "",
         "output": '[{"command": "change", "paras": [["Upper-clothes"], "white"]}]',
         "history": [["我更改了图片，新的图片有哪些部分？", labels]]},
        {"instruction": "美化皮肤", "input": "",
         "output": '[{"command": "change", "paras": [["Skin"], "smooth skin"]}]',
         "history": [["我更改了图片，新的图片有哪些部分？", labels]]},
        {"instruction": "让头发更蓬松", "input": "", "output": "Sorry, I cannot.",
         "history": [["我更改了图片，新的图片有哪些部分？", labels]]},
    ]
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_eval_planner_reports_validity_f1_and_type_accuracy(worker_env: dict[str, str], tmp_path: Path) -> None:
    dataset = _tiny_dataset(tmp_path / "tiny.json")
    result = _invoke(worker_env, "eval", "planner", "--planner", "rules", "--dataset", str(dataset), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 4 and report["reference_unparsable"] == 1
    # Sample 1: change Background (F1 1, type match); 2: recolor Upper-clothes (F1 1, type differs);
    # 3: a face retouch with no targets vs the reference's 'Skin' (F1 0).
    assert report["target_f1"] == pytest.approx(2 / 3)
    assert report["command_type_accuracy"] == pytest.approx(1 / 3)
    assert report["validity_rate"] == 1.0

    reference = json.loads(_invoke(worker_env, "eval", "planner", "--planner", "reference", "--dataset", str(dataset),
                                   "--json").stdout)
    # The dataset's own outputs: 'Skin' is no label of the image and one output does not parse.
    assert reference["validity_rate"] == pytest.approx(2 / 4)
    text = _invoke(worker_env, "eval", "planner", "--dataset", str(dataset)).stdout
    assert "validity rate" in text and "target-set F1" in text and "command-type accuracy" in text


@pytest.mark.skipif(not SEED.is_file(), reason="../shared/data/seed_chat_dataset.json is not beside this checkout")
def test_rule_planner_on_the_seed_dataset(worker_env: dict[str, str]) -> None:
    result = _invoke(worker_env, "eval", "planner", "--dataset", str(SEED), "--limit", "300", "--json")
    report = json.loads(result.stdout)
    assert report["samples"] == 300
    assert report["validity_rate"] > 0.95
    assert report["target_f1"] > 0.85


def test_edit_with_a_segmenter_plans_and_masks_by_the_labels_it_finds(worker_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    from tests.test_segmentation_support import ID, build_colour_segmenter, paint, person_labels

    model = build_colour_segmenter(tmp_path / "colours.onnx")
    labels = person_labels()
    source = tmp_path / "person.png"
    Image.fromarray(paint(labels)).save(source)
    out = tmp_path / "out.png"
    result = _invoke(worker_env, "edit", str(source), "--request", "make the shirt white, and remove the hat",
                     "--segmenter", str(model), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Hat" in result.stderr  # the person has no hat: said, not guessed
    recipe = read_recipe(out.read_bytes())
    assert recipe["commands"] == [{"command": "recolor", "paras": [["Upper-clothes"], "white"]}]
    assert recipe["segmenter"] == "colours@000000000001" and "Upper-clothes" in recipe["labels"]
    before = np.asarray(Image.open(source).convert("RGB")).astype(int)
    after = np.asarray(Image.open(out).convert("RGB")).astype(int)
    shirt = labels == ID["Upper-clothes"]
    inner = np.zeros_like(shirt)
    inner[55:75, 50:80] = True
    assert after[inner & shirt].mean() > before[inner & shirt].mean() + 40
    dress_far = np.zeros_like(shirt)
    dress_far[95:120, 50:80] = True
    assert np.array_equal(after[dress_far], before[dress_far])
