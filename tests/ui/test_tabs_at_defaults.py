"""Every tab at its defaults, only the required input filled, in a real Chromium, at desktop and
phone (390 px) widths; screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import pytest

from tests.ui.test_browser import EXAMPLE_PHOTO, FOOTER, ROOT, last_answer, open_app, send, shot, wait_for

pytestmark = pytest.mark.slow  # a browser

pytest.importorskip("playwright.sync_api")
QUESTION = ROOT / "ui" / "examples" / "question.wav"


@pytest.fixture(params=[1280, 390], ids=["desktop", "phone"])
def page(request, browser, web_server):
    context = browser.new_context(viewport={"width": request.param, "height": 900})
    page = context.new_page()
    page.width = request.param
    open_app(page, web_server)
    yield page
    context.close()


def open_tab(page, name: str) -> None:
    """On a phone the tabs that do not fit sit behind Gradio's "More tabs" menu."""
    tab = page.get_by_role("tab", name=name)
    if tab.count():
        tab.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=name).click()


def no_errors(page) -> None:
    """Neither a toast nor an output's red Error badge."""
    page.wait_for_timeout(300)
    toasts = page.locator(".toast-body").all_inner_texts()
    assert not [t for t in toasts if "rror" in t], toasts
    assert page.locator(".error").count() == 0


def test_chat_at_defaults_keeps_its_placeholder(page):
    box = page.locator("#chat-input textarea")
    placeholder = box.get_attribute("placeholder")
    assert placeholder
    send(page, "Hello")
    wait_for(lambda: FOOTER in last_answer(page))
    assert box.get_attribute("placeholder") == placeholder
    no_errors(page)
    shot(page, f"defaults-chat-{page.width}")


def test_photo_by_voice_at_defaults(page):
    open_tab(page, "Photo by voice")
    page.locator("#photo-input input[type=file]").set_input_files(str(EXAMPLE_PHOTO))
    page.locator("#voice-input input[type=file]").set_input_files(str(QUESTION))
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Ask about the photo").click()
    wait_for(lambda: "vision adapter" in page.locator("#photo-answer").inner_text())
    no_errors(page)
    shot(page, f"defaults-photo-by-voice-{page.width}")


def test_speech_at_defaults_and_translate_to_only_when_translating(page):
    open_tab(page, "Speech")
    assert not page.get_by_label("Translate to").is_visible()
    assert not page.locator("#speech-translation").is_visible()  # no second box for a transcript
    page.locator("#speech-input input[type=file]").set_input_files(str(QUESTION))
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Run", exact=True).click()
    wait_for(lambda: page.locator("#speech-transcript textarea").input_value())
    no_errors(page)
    page.get_by_label("Translate", exact=True).check()
    wait_for(lambda: page.get_by_label("Translate to").is_visible(), timeout=5)
    wait_for(lambda: page.locator("#speech-translation").is_visible(), timeout=5)
    shot(page, f"defaults-speech-{page.width}")


def test_meeting_at_defaults(page):
    open_tab(page, "Meeting")
    assert page.locator("#meeting-length input").input_value() == "0"
    page.locator("#meeting-input input[type=file]").set_input_files(str(QUESTION))
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Summarise").click()
    wait_for(lambda: page.locator("#meeting-transcript textarea").input_value(), timeout=120)
    no_errors(page)
    shot(page, f"defaults-meeting-{page.width}")
