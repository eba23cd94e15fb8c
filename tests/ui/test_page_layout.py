"""What the page claims and how it fits: "Nothing leaves this computer" only where it is true, one
progress overlay for a meeting, Summarise in view at 1280 x 800, and on a 390 px phone a compact
header with every tab in reach (no "More tabs" menu). The Blocks are built as `serve` builds them,
with a web glue that is never called."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.settings import Settings
from tests.ui.test_browser import open_app, shot
from ui.app import build_app

pytestmark = pytest.mark.slow  # a browser

LOCAL = "Nothing leaves this computer."
TABS = ["Chat", "Photo by voice", "Speech", "Meeting"]


class Glue:
    def __init__(self, settings: Settings):
        self.settings = settings


def header(demo) -> str:
    return next(b.value for b in demo.blocks.values() if "phi-header" in (getattr(b, "elem_classes", None) or []))


@pytest.mark.parametrize(
    "backend, space, local",
    [("local", None, True), ("openai", None, False), ("local", "someone/phi4mm", False)],
)
def test_nothing_leaves_this_computer_only_when_true(monkeypatch, backend, space, local):
    if space:
        monkeypatch.setenv("SPACE_ID", space)
    else:
        monkeypatch.delenv("SPACE_ID", raising=False)
    demo = build_app(Glue(replace(Settings(), backend=backend)))
    assert (LOCAL in header(demo)) is local


def test_a_meeting_shows_one_progress_overlay():
    demo = build_app(Glue(Settings()))
    summarize = next(fn for fn in demo.fns.values() if fn.api_name == "summarize")
    assert [block.elem_id for block in summarize.show_progress_on] == ["meeting-summary"]


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_the_page_fits(browser, web_server, width, height):
    pytest.importorskip("playwright.sync_api")
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    open_app(page, web_server)
    assert page.get_by_role("tab").all_inner_texts() == TABS  # all four, none behind "⋯"
    assert not page.get_by_role("button", name="More tabs").is_visible()
    tabs_top = page.get_by_role("tablist").bounding_box()["y"]
    assert tabs_top < (120 if width < 640 else 160)  # the header above them stays compact
    page.get_by_role("tab", name="Meeting").click()
    go = page.get_by_role("button", name="Summarise").bounding_box()
    assert go["y"] + go["height"] <= height  # in view without scrolling
    shot(page, f"layout-meeting-{width}x{height}")
    context.close()
