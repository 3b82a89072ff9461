"""A before/after comparison slider: the two images stacked, a divider to drag or move with the keyboard.

Self-contained HTML and JavaScript in an iframe, with the images inlined as data URLs, so
it needs no component build, no CDN and no network.
"""

from __future__ import annotations

import base64
import html
import io

import streamlit as st
from PIL import Image as PILImage

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><style>
html, body {{ margin: 0; padding: 0; background: transparent; font-family: sans-serif; }}
.compare {{ position: relative; width: 100%; max-width: {width}px; aspect-ratio: {width} / {height}; margin: 0 auto;
  overflow: hidden; cursor: ew-resize; touch-action: none; user-select: none; --position: 50%; }}
.compare img {{ position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; pointer-events: none; }}
.compare .before {{ clip-path: inset(0 calc(100% - var(--position)) 0 0); }}
.compare .divider {{ position: absolute; top: 0; bottom: 0; left: var(--position); width: 2px; margin-left: -1px;
  background: #fff; box-shadow: 0 0 3px rgba(0, 0, 0, .7); }}
.compare .handle {{ position: absolute; top: 50%; left: var(--position); width: 26px; height: 26px;
  margin: -13px 0 0 -13px; border-radius: 50%; background: #fff; border: 2px solid #31333f; box-sizing: border-box; }}
.compare:focus {{ outline: none; }}
.compare:focus-visible .handle {{ outline: 3px solid #ff4b4b; outline-offset: 2px; }}
.compare .tag {{ position: absolute; top: 6px; padding: 1px 6px; font-size: 12px; color: #fff;
  background: rgba(0, 0, 0, .55); border-radius: 3px; }}
</style></head><body>
<div class="compare" role="slider" tabindex="0" aria-label="{label}" aria-valuemin="0" aria-valuemax="100"
     aria-valuenow="50" aria-valuetext="50% before">
  <img class="after" alt="{after_label}" src="{after}">
  <img class="before" alt="{before_label}" src="{before}">
  <span class="tag" style="left: 6px">{before_label}</span><span class="tag" style="right: 6px">{after_label}</span>
  <div class="divider"></div><div class="handle"></div>
</div>
<script>
const box = document.querySelector(".compare");
function place(percent) {{
  const p = Math.max(0, Math.min(100, percent));
  box.style.setProperty("--position", p + "%");
  box.setAttribute("aria-valuenow", Math.round(p));
  box.setAttribute("aria-valuetext", Math.round(p) + "% before");
}}
function follow(event) {{
  const r = box.getBoundingClientRect();
  place((event.clientX - r.left) / r.width * 100);
}}
box.addEventListener("pointerdown", (e) => {{ box.setPointerCapture(e.pointerId); follow(e); box.focus(); }});
box.addEventListener("pointermove", (e) => {{ if (box.hasPointerCapture(e.pointerId)) follow(e); }});
box.addEventListener("keydown", (e) => {{
  const now = Number(box.getAttribute("aria-valuenow"));
  const step = e.shiftKey ? 10 : 2;
  const to = {{ArrowLeft: now - step, ArrowDown: now - step, ArrowRight: now + step, ArrowUp: now + step,
              PageDown: now - 25, PageUp: now + 25, Home: 0, End: 100}}[e.key];
  if (to !== undefined) {{ place(to); e.preventDefault(); }}
}});
</script></body></html>"""


def data_url(image: bytes) -> str:
    """An image as a data URL (PNG, JPEG or WebP, told by its first bytes)."""
    mime = ("image/jpeg" if image[:3] == b"\xff\xd8\xff"
            else "image/webp" if image[:4] == b"RIFF" and image[8:12] == b"WEBP" else "image/png")
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def compare_page(before: bytes, after: bytes, size: tuple[int, int], *, before_label: str = "Before",
                 after_label: str = "After") -> str:
    """The slider's HTML page for two images shown at most ``size`` (height, width) pixels."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"the slider needs a positive size, not {width}×{height}")
    return _PAGE.format(
        width=width, height=height, before=data_url(before), after=data_url(after),
        before_label=html.escape(before_label), after_label=html.escape(after_label),
        label=html.escape(f"{before_label} and {after_label.lower()}: drag, or use the arrow keys, to move the "
                          "divider"),
    )


def render_compare(before: bytes, after: bytes, size: tuple[int, int], *, before_label: str = "Before",
                   after_label: str = "After") -> None:
    """Show the slider, as wide as its container allows and never wider than ``size``."""
    st.iframe(compare_page(before, after, size, before_label=before_label, after_label=after_label),
              height="content", alt=f"{before_label} and {after_label.lower()} comparison slider")


def image_size(image: bytes) -> tuple[int, int]:
    """(height, width) of encoded image bytes, read from the header only."""
    with PILImage.open(io.BytesIO(image)) as opened:
        return opened.height, opened.width
