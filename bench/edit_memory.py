"""Edit memory benchmark: the peak memory and time of each classical command, as a multiple of the image's RGB size.

Usage (from the repository root)::

    .venv/bin/python bench/edit_memory.py [--sizes 4000x3000,6300x6300] [--before REV] [--json PATH]

Each (image size, command, implementation) runs in a fresh subprocess, so one run's
freed memory cannot hide the next one's peak. The child builds a synthetic photo and the
command's mask, notes its resident memory, resets the kernel's high-water mark
(``/proc/self/clear_refs``), runs the command the way ``core.editing`` calls it, and
reads the high-water mark again: the difference is the command's working memory, all of
it (numpy arrays and OpenCV's own buffers alike). It is printed as a multiple of the
image's RGB size (3 bytes a pixel), the unit ``core.memory`` estimates in.

"before" is ``core/classical.py`` as it was at ``--before`` (read with ``git show`` and
run in the same process kind, on the same inputs, in the same run), so the ratio column
compares implementations on one machine at one moment; "now" is the working tree. The
benchmark only reports; it never fails on a target.

Masks, as the edit job would get them: ``recolor`` and ``remove`` a person (an ellipse,
about a fifth of the image), every ``adjust`` the whole image (its default target, and
its worst case), ``blur`` the background (the rest). Two phases of the job that are not
classical commands are measured "now" only: a generative command's work at full size
(compositing) and decoding the stored PNG plus encoding the result. ``core.memory``'s
footprints are fitted to these figures at two sizes.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The commit before the memory work: what "before" means unless --before names another.
DEFAULT_BEFORE = "10b61fe"

COMMANDS = ("recolor", "adjust brightness", "adjust contrast", "adjust saturation", "adjust warmth",
            "adjust sharpness", "blur", "remove")
#: Not classical commands, measured "now" only: a generative command's work at full size (its model's
#: 512² output resized back and composited over the feathered mask) and the job's load and store phases.
JOB_PHASES = ("generative composite", "load + store")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise LookupError(key)


def _scene(width: int, height: int) -> tuple[Any, Any]:
    """A textured photo and a person-shaped mask, built without large temporaries."""
    import numpy as np

    image = np.empty((height, width, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    xs = (np.arange(width, dtype=np.int32) * 200 // width).astype(np.uint8)
    mask = np.empty((height, width), dtype=bool)
    for top in range(0, height, 256):
        rows = slice(top, min(height, top + 256))
        y = np.arange(rows.start, rows.stop)[:, None]
        image[rows, :, 0] = xs
        image[rows, :, 1] = (y * 180 // height).astype(np.uint8)
        image[rows, :, 2] = 120
        image[rows] = np.clip(image[rows].astype(np.int16) + rng.integers(-20, 20, image[rows].shape, dtype=np.int16),
                              0, 255).astype(np.uint8)
        x = np.arange(width)[None, :]
        mask[rows] = ((x - width / 2) / (width * 0.22)) ** 2 + ((y - height * 0.55) / (height * 0.35)) ** 2 <= 1.0
    return image, mask


def _load_classical(which: str, before: str) -> Any:
    if which == "now":
        from core import classical

        return classical
    source = subprocess.run(["git", "show", f"{before}:core/classical.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "classical_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("classical_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def child(width: int, height: int, command: str, which: str, before: str) -> dict[str, Any]:
    """Run one command once in this (fresh) process and measure it."""
    import numpy as np

    classical = _load_classical(which, before)
    image, person = _scene(width, height)
    if command == "blur":
        mask = ~person
    elif command == "load + store":
        del person
        mask = None
    elif command.startswith("adjust"):
        mask = np.ones_like(person)
    else:
        mask = person
    warm = np.zeros((64, 64, 3), dtype=np.uint8)  # first calls load OpenCV's code paths, not image memory
    classical.recolor(warm, np.ones((64, 64), bool), (0, 0, 128))
    classical.blur(warm, np.ones((64, 64), bool), 0.5)
    classical.remove(warm, np.eye(64, dtype=bool))
    if command == "load + store":
        from PIL import Image

        from jobs.images import encode_png

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        stored = buffer.getvalue()
        del buffer
    elif command == "generative composite":
        from core.generative.compositing import composite, feathered_alpha, resize

        generated_small = np.full((512, 512, 3), 90, dtype=np.uint8)
    held_kib = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current resident size
    started = time.perf_counter()
    if command == "load + store":
        with Image.open(io.BytesIO(stored), formats=["PNG"]) as decoded:
            loaded = np.asarray(decoded.convert("RGB"))
        out = loaded
        encode_png(loaded, text={"chatedit": "{}" * 2000})
    elif command == "generative composite":
        out = composite(image, resize(generated_small, image.shape[:2]), feathered_alpha(mask, 4))
    elif command == "recolor":
        out = classical.recolor(image, mask, (0, 0, 128))
    elif command.startswith("adjust"):
        out = classical.adjust(image, command.split()[1], 0.3, mask)
    elif command == "blur":
        out = classical.blur(image, mask, 0.5)
    else:
        out = classical.remove(image, mask).image
    seconds = time.perf_counter() - started
    peak_kib = _status_kib("VmHWM")
    rgb_bytes = width * height * 3
    return {"seconds": seconds, "peak_mb": (peak_kib - held_kib) / 1024,
            "multiple": (peak_kib - held_kib) * 1024 / rgb_bytes, "checksum": int(out[::97, ::89].sum())}


def measure(width: int, height: int, command: str, which: str, before: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", f"{width}x{height}", command, which, "--before", before],
        cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4000x3000,6300x6300", help="comma-separated WxH (default: 12 MP, 6300²)")
    parser.add_argument("--commands", default=",".join(COMMANDS + JOB_PHASES),
                        help="comma-separated, from: " + ", ".join(COMMANDS + JOB_PHASES))
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of core/classical.py to compare with")
    parser.add_argument("--no-before", action="store_true", help="measure the working tree only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("WxH", "COMMAND", "WHICH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, command, which = args.child
        print(json.dumps(child(*_size(size), command, which, args.before)))
        return

    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
          f"before = core/classical.py at {args.before}")
    rows = []
    for size in args.sizes.split(","):
        width, height = _size(size)
        print(f"\n## {width}×{height} ({width * height / 1e6:.1f} MP, RGB {width * height * 3 / 2**20:.0f} MB)")
        print(f"{'command':<20} {'peak MB':>8} {'× RGB':>6} {'s':>6}" + ("" if args.no_before else
              f" | {'before MB':>9} {'× RGB':>6} {'s':>6} | {'peak ratio':>10} {'time ratio':>10}"))
        for command in args.commands.split(","):
            now = measure(width, height, command, "now", args.before)
            line = f"{command:<20} {now['peak_mb']:>8.0f} {now['multiple']:>6.1f} {now['seconds']:>6.2f}"
            row = {"size": [width, height], "command": command, "now": now}
            if not args.no_before and command in COMMANDS:
                old = measure(width, height, command, "before", args.before)
                row["before"] = old
                line += (f" | {old['peak_mb']:>9.0f} {old['multiple']:>6.1f} {old['seconds']:>6.2f} | "
                         f"{now['peak_mb'] / old['peak_mb']:>10.2f} {now['seconds'] / old['seconds']:>10.2f}")
            print(line, flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
