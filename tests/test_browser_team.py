"""A team in real browsers: four people, each in their own chromium context, on one `chatedit serve`
with CHATEDIT_AUTH=local (the issue's "Done when").

Ada creates the first admin on the first-run page and, on the Accounts page, an editor (Ed), a
reviewer (Rita) and a viewer (Vic). Ed makes a history with two steps and shares it with the team,
and a second one he keeps private. Rita finds the shared one in the Gallery (never the private
one), pins a comment to a point of one step and approves the other on the Review page. Ed sees both
on his open editor page. Ada sets another base while Ed's view is old: Ed's Set as base is refused
with who changed it and when. Vic reads the shared history and can do nothing else. Screenshots of
the sign-in page, the Accounts page, the Review page and a reviewed step are taken on the way
(copied to docs/screenshots/ when CHATEDIT_SAVE_SCREENSHOTS=1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.ui.editor import FOLLOW_S
from app.ui.samples import landscape, still_life
from core.settings import load_settings
from jobs.gallery import base_step_id
from jobs.histories import get_history, history_steps, history_version
from jobs.images import encode_png
from jobs.services import Services, reviews
from jobs.services.access import may_read
from jobs.services.accounts import Accounts
from jobs.services.permissions import actor_for, local_actor
from tests.browser_support import browser_people, keep_screenshots, serving, shot, wait_idle

pytestmark = pytest.mark.slow

#: Everyone's password (typed into the forms; the server hashes it with its real Argon2 costs).
PASSWORD = "correct horse battery"
#: Where Rita pins her comment: fractions of the picture's width and height.
PIN = (0.3, 0.4)
COMMENT = "The left side is too dark now."


#: For a page whose view must stay old: while ``window.chateditHoldPolling`` is true, the timers that repeat every
#: FOLLOW_S seconds (the Editor's polling fragment: Streamlit's run_every is a setInterval) skip their turn.
HOLD_POLLING = f"""
const realSetInterval = window.setInterval;
window.setInterval = function (callback, delay, ...rest) {{
  if (typeof callback !== "function" || delay !== {FOLLOW_S * 1000:g}) return realSetInterval(callback, delay, ...rest);
  return realSetInterval(function (...args) {{
    if (!window.chateditHoldPolling) return callback.apply(this, args);
  }}, delay, ...rest);
}};
"""


def _services(data_dir: Path) -> Services:
    return Services.from_settings(load_settings(data_dir=data_dir))


def _sign_in(page: Any, url: str, name: str, label: str) -> None:
    """Sign in on the sign-in page with a name and the password; the sidebar then says who is signed in."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    _signed_in(page, label)


def _signed_in(page: Any, label: str) -> None:
    """Wait until the sidebar says who is signed in and the browser keeps the session in its cookie (the page
    writes it after its run; an address typed before that would find nobody signed in)."""
    from playwright.sync_api import expect

    expect(page.get_by_text(f"Signed in as {label}")).to_be_visible()
    page.wait_for_function("document.cookie.includes('chatedit_session=')")
    wait_idle(page)


def _create_account(page: Any, name: str, display: str, role: str) -> None:
    """Ada fills the Accounts page's "New account" form."""
    from playwright.sync_api import expect

    page.locator(".st-key-accounts_new_name input").fill(name)
    page.locator(".st-key-accounts_new_display input").fill(display)
    page.locator(".st-key-accounts_new_email input").fill(f"{name}@chatedit.test")
    page.locator(".st-key-accounts_new_role input").click()  # the box opens the list (its arrow toggles it)
    page.get_by_role("option", name=re.compile(f"^{role}:")).click()
    page.locator(".st-key-accounts_new_password input").fill(PASSWORD)
    page.locator(".st-key-accounts_new_password2 input").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(f"Created {name} ({role}) with a password.")).to_be_visible()
    wait_idle(page)


def _chat_and_run(page: Any, request: str, command: str) -> None:
    """Say ``request`` in the chat, see ``command`` on the board, Run all, and wait for the result."""
    from playwright.sync_api import expect

    chat = page.get_by_placeholder("Say what to change")
    chat.fill(request)
    chat.press("Enter")
    expect(page.get_by_text(command).first).to_be_visible()
    wait_idle(page)
    page.get_by_role("button", name="Run all").click()
    expect(page.get_by_text(f"Done: {command}")).to_be_visible()
    expect(page.get_by_role("button", name="Set as base")).to_be_visible()
    wait_idle(page)


def _picture(page: Any) -> Any:
    """The review panel's clickable picture (a component: it lives in its own frame), once it has loaded."""
    from playwright.sync_api import expect

    picture = page.frame_locator("iframe[title*='streamlit_image_coordinates']").locator("#image")
    expect(picture).to_be_visible()
    picture.evaluate("img => img.complete && img.naturalWidth > 0 || new Promise(r => img.addEventListener("
                     "'load', r, {once: true}))")
    return picture


def _tall_shot(page: Any, path: Path, *, height: int) -> None:
    """A screenshot of the page from its top in a window ``height`` pixels tall: Streamlit scrolls its main area
    itself, so a full-page screenshot shows only the window, wherever the last click scrolled it."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": height})
    try:
        page.get_by_test_id("stMain").evaluate("main => main.scrollTo(0, 0)")
        shot(page, path)
    finally:
        page.set_viewport_size(size)


def _menu(page: Any) -> Any:
    return page.get_by_test_id("stSidebarNav")


def test_a_team_shares_reviews_and_is_refused_a_stale_base(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_segmentation_support import build_colour_segmenter

    shots = tmp_path / "screenshots"
    fruit, hills = tmp_path / "fruit-bowl.png", tmp_path / "hills.png"
    fruit.write_bytes(encode_png(still_life()))
    hills.write_bytes(encode_png(landscape()))
    segmenter = build_colour_segmenter(tmp_path / "colours.onnx")
    with (serving(tmp_path, auth="local", segmenter=str(segmenter)) as (url, data_dir),
          browser_people(shots, "ada", "ed", "rita", "vic") as people):
        ada, ed, rita, vic = people["ada"], people["ed"], people["rita"], people["vic"]

        # 1. Nobody can sign in yet: the first-run page makes Ada the admin, signed in.
        ada.goto(url)
        expect(ada.get_by_role("heading", name="Create the first admin")).to_be_visible()
        ada.get_by_role("textbox", name="Name (to sign in with)").fill("ada")
        ada.get_by_role("textbox", name="Display name (what others see)").fill("Ada")
        ada.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
        ada.get_by_role("textbox", name="Password again").fill(PASSWORD)
        ada.get_by_role("button", name="Create the first admin").click()
        _signed_in(ada, "Ada (admin)")
        expect(_menu(ada).get_by_text("Accounts", exact=True)).to_be_visible()

        # Now the app asks everyone else to sign in, and shows nothing else.
        ed.goto(url)
        expect(ed.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
        expect(ed.get_by_role("heading", name="Create the first admin")).to_have_count(0)
        expect(ed.get_by_text("Upload a photo")).to_have_count(0)
        for label in ("Name", "Password"):  # the form's labels are drawn after its boxes
            expect(ed.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)).to_be_visible()
        wait_idle(ed)
        shot(ed, shots / "sign-in.png")

        # 2. Ada creates an editor, a reviewer and a viewer on the Accounts page.
        ada.goto(f"{url}/accounts")
        expect(ada.get_by_role("heading", name="New account")).to_be_visible()
        _create_account(ada, "ed", "Ed", "editor")
        _create_account(ada, "rita", "Rita", "reviewer")
        _create_account(ada, "vic", "Vic", "viewer")
        table = ada.get_by_test_id("stTable").first
        for name in ("ada", "ed", "rita", "vic"):
            expect(table.get_by_text(name, exact=True)).to_be_visible()
        shot(ada, shots / "accounts.png")

        # 3. Ed signs in, keeps one history private and shares another with two edit steps.
        _sign_in(ed, url, "ed", "Ed (editor)")
        expect(_menu(ed).get_by_text("Review", exact=True)).to_have_count(0)
        ed.locator('input[type="file"]').set_input_files(str(hills))
        expect(ed.get_by_role("heading", name="hills")).to_be_visible()
        expect(ed.get_by_text("Private: only its owner and admins see it.")).to_be_visible()
        expect(ed.get_by_text("Parts found:")).to_be_visible()
        wait_idle(ed)
        private_id = int(re.search(r"history=(\d+)", ed.url).group(1))  # type: ignore[union-attr]

        ed.locator('input[type="file"]').set_input_files(str(fruit))
        expect(ed.get_by_role("heading", name="fruit-bowl")).to_be_visible()
        expect(ed.get_by_text("Parts found:")).to_be_visible()
        shared_id = int(re.search(r"history=(\d+)", ed.url).group(1))  # type: ignore[union-attr]
        assert shared_id != private_id
        _chat_and_run(ed, "make it brighter", "Brighten the whole image (+0.3)")
        ed.get_by_role("button", name="Set as base").click()
        expect(ed.get_by_text(re.compile(r"Step \d+ is the new base\."))).to_be_visible()
        wait_idle(ed)
        _chat_and_run(ed, "make it darker", "Darken the whole image (-0.3)")
        ed.get_by_text("Shared with the team", exact=True).click()
        expect(ed.get_by_text("Shared with the team: everyone who may read the team's histories sees it.")) \
            .to_be_visible()
        wait_idle(ed)

        services = _services(data_dir)
        try:
            root, brighter, darker = history_steps(services, shared_id)
        finally:
            services.close()
        assert (brighter.parent_id, darker.parent_id) == (root.id, brighter.id)

        # 4. Rita finds the shared history in the Gallery, never the private one, not even by its address.
        _sign_in(rita, url, "rita", "Rita (reviewer)")
        rita.goto(f"{url}/gallery")
        expect(rita.get_by_text("fruit-bowl", exact=True)).to_be_visible()
        wait_idle(rita)
        expect(rita.get_by_text("hills", exact=True)).to_have_count(0)
        rita.goto(f"{url}/editor?history={private_id}")
        expect(rita.get_by_text("Rita (reviewer) may not read other people's private histories")).to_be_visible()
        expect(rita.get_by_role("heading", name="hills")).to_have_count(0)

        # On the Review page, the newest step first: she pins a comment to a point of "darker" …
        rita.goto(f"{url}/review")
        expect(rita.get_by_role("heading", name="fruit-bowl")).to_be_visible()
        expect(rita.get_by_text("make it darker", exact=True)).to_be_visible()
        wait_idle(rita)
        picture = _picture(rita)
        box = picture.bounding_box()
        assert box is not None
        picture.click(position={"x": box["width"] * PIN[0], "y": box["height"] * PIN[1]})
        expect(rita.get_by_text("Pinned as 1 at 30% across, 40% down.")).to_be_visible()
        wait_idle(rita)
        comment_box = rita.locator(f".st-key-review_{darker.id}_comment_text textarea")
        comment_box.fill(COMMENT)
        comment_box.press("Control+Enter")  # Streamlit takes a text area's words on Ctrl+Enter (or on leaving it)
        wait_idle(rita)
        rita.get_by_role("button", name="Comment").click()
        expect(rita.get_by_text(re.compile(r"Rita commented · pin 1"))).to_be_visible()
        expect(rita.get_by_role("blockquote").get_by_text(COMMENT)).to_be_visible()
        expect(comment_box).to_have_value("")  # posted: the box is empty for the next one
        wait_idle(rita)
        _picture(rita)
        _tall_shot(rita, shots / "review.png", height=2100)

        # … then moves to "brighter" with j and approves it with a.
        rita.get_by_role("heading", name="Review").click()  # keys go to the page, not to a text box
        rita.keyboard.press("j")
        expect(rita.get_by_text("make it brighter", exact=True)).to_be_visible()
        expect(rita.locator(f".st-key-review_{brighter.id}_approve")).to_be_visible()
        expect(rita.locator(f".st-key-review_{darker.id}_approve")).to_have_count(0)
        expect(rita.get_by_role("button", name="Approve")).to_have_count(1)
        wait_idle(rita)
        rita.get_by_role("heading", name="Review").click()
        rita.keyboard.press("a")
        expect(rita.get_by_text(f"You approved step {brighter.id}.")).to_be_visible()

        # 5. Ed, on the editor page he never left, opens "Review and comments": the pinned comment on the
        # result he is looking at ("darker"), its marker drawn on the picture …
        ed.get_by_text("Review and comments").click()
        expect(ed.get_by_text(f"Step {darker.id}, the result on show.")).to_be_visible()
        expect(ed.get_by_text(re.compile(r"Rita commented · pin 1"))).to_be_visible()
        expect(ed.get_by_role("blockquote").get_by_text(COMMENT)).to_be_visible()
        expect(ed.get_by_text("Numbers mark the points comments are pinned to")).to_be_visible()
        wait_idle(ed)
        _picture(ed)
        _tall_shot(ed, shots / "reviewed-step.png", height=2300)
        # … and, on the base ("brighter", opened from the history tree), Rita's approval.
        ed.get_by_text(re.compile(r"^History tree: 3 steps")).click()
        ed.get_by_role("button", name=f"Step {brighter.id} · base").click()
        expect(ed.get_by_text(f"Step {brighter.id}, the base.")).to_be_visible()
        expect(ed.get_by_text("Rita approved")).to_be_visible()
        expect(ed.get_by_text(re.compile(r"^by Rita · "))).to_be_visible()  # beside the "approved" badge
        wait_idle(ed)

        # 6. Ed and Ada both look at the history; Ed's view is old (its refresh held back, as if he clicked within
        # FOLLOW_S of Ada) when Ada sets "darker" as the base. His Set as base on it is refused, with who and when;
        # the sentence stays on his page.
        old_view = ed.context.new_page()
        old_view.add_init_script(HOLD_POLLING)
        old_view.goto(f"{url}/editor?history={shared_id}")
        expect(old_view.get_by_role("button", name="Set as base")).to_be_visible()
        wait_idle(old_view)
        old_view.evaluate("window.chateditHoldPolling = true")

        ada.goto(f"{url}/editor?history={shared_id}")
        expect(ada.get_by_text("This is Ed's history; you may change it as an admin.", exact=False)).to_be_visible()
        expect(ada.get_by_role("button", name="Set as base")).to_be_visible()
        wait_idle(ada)
        ada.get_by_role("button", name="Set as base").click()
        expect(ada.get_by_text(f"Step {darker.id} is the new base.")).to_be_visible()

        old_view.get_by_role("button", name="Set as base").click()
        refusal = old_view.get_by_text(re.compile(r"This history changed after you looked at it: Ada chose another "
                                                  r"base step at .*Nothing was changed"))
        expect(refusal).to_be_visible()
        expect(old_view.get_by_text(f"base is step {darker.id}.", exact=False)).to_be_visible()
        old_view.evaluate("window.chateditHoldPolling = false")
        old_view.get_by_text(re.compile(r"^History tree: 3 steps")).click()  # the page runs again: the sentence stays
        expect(old_view.get_by_role("button", name=f"Step {darker.id} · base")).to_be_visible()
        expect(refusal).to_be_visible()
        services = _services(data_dir)
        try:
            version = history_version(services, shared_id)
            assert base_step_id(services, shared_id) == darker.id
            assert (version.changed_by_name, version.change) == ("Ada", "base")
        finally:
            services.close()
        old_view.close()

        # 7. Vic reads the team's history and can do nothing else: no Review page, no upload, chat or run.
        _sign_in(vic, url, "vic", "Vic (viewer)")
        expect(_menu(vic).get_by_text("Gallery", exact=True)).to_be_visible()
        expect(_menu(vic).get_by_text("Review", exact=True)).to_have_count(0)
        expect(_menu(vic).get_by_text("Accounts", exact=True)).to_have_count(0)
        expect(vic.locator('input[type="file"]')).to_have_count(0)
        vic.goto(f"{url}/gallery")
        expect(vic.get_by_text("fruit-bowl", exact=True)).to_be_visible()
        wait_idle(vic)
        expect(vic.get_by_text("hills", exact=True)).to_have_count(0)
        vic.goto(f"{url}/editor?history={shared_id}")
        expect(vic.get_by_role("heading", name="fruit-bowl")).to_be_visible()
        expect(vic.get_by_text("Ed's history: you can look, not change it.")).to_be_visible()
        expect(vic.get_by_text("make it darker", exact=True)).to_be_visible()  # the chat, to read
        wait_idle(vic)
        for absent in (vic.get_by_placeholder("Say what to change"), vic.locator('input[type="file"]'),
                       vic.get_by_role("button", name="Run all"), vic.get_by_role("button", name="Set as base"),
                       vic.get_by_role("button", name="Undo"), vic.get_by_text("Shared with the team", exact=True)):
            expect(absent).to_have_count(0)
        vic.get_by_text("Review and comments").click()
        expect(vic.get_by_text("Vic (viewer) may read this thread but not comment.")).to_be_visible()
        expect(vic.get_by_role("button", name="Approve")).to_have_count(0)

    # The database agrees: the review rows exist, and the private history was never readable by Rita or Vic.
    services = _services(data_dir)
    try:
        admin = local_actor(services)
        by_name = {a.name: actor_for(services, a.id) for a in Accounts(services).list_users(admin)}
        assert {n: by_name[n].role for n in ("ada", "ed", "rita", "vic")} == {
            "ada": "admin", "ed": "editor", "rita": "reviewer", "vic": "viewer"}
        states = reviews.step_states(services, [brighter.id, darker.id])
        assert (states[brighter.id].state, states[brighter.id].decided_by) == ("approved", "Rita")
        assert states[darker.id].state == "awaiting"
        (note,) = reviews.thread(services, by_name["ed"], darker.id)
        assert (note.kind, note.author_name, note.text, note.pin) == ("comment", "Rita", COMMENT, 1)
        assert note.x == pytest.approx(PIN[0], abs=0.02) and note.y == pytest.approx(PIN[1], abs=0.02)
        private, shared = get_history(services, private_id), get_history(services, shared_id)
        assert (private.owner_id, private.visibility, shared.visibility) == (by_name["ed"].id, "private", "team")
        assert not may_read(by_name["rita"], private) and not may_read(by_name["vic"], private)
        assert may_read(by_name["rita"], shared) and may_read(by_name["vic"], shared)
        queue = reviews.review_queue(services, by_name["rita"], states=frozenset(reviews.REVIEW_STATES))
        assert {item.history.id for item in queue} == {shared_id}
        audited = [(e.actor_id, e.action, e.object_id) for e in Accounts(services).audit_entries(admin)]
        assert (by_name["rita"].id, "review.approve", str(brighter.id)) in audited
        assert (by_name["rita"].id, "review.comment", str(darker.id)) in audited
    finally:
        services.close()
    keep_screenshots(shots)
