"""Stop on every tab that answers, in a real Chromium at desktop and phone widths: the answer stops
growing, says "(stopped)", and keeps the metrics of what was generated. Screenshots go to
artifacts/screenshots/."""

from __future__ import annotations

import pytest
import soundfile as sf

from tests.ui.test_browser import EXAMPLE_PHOTO, last_answer, shot, start_a_long_photo_answer, wait_for
from tests.ui.test_tabs_at_defaults import open_tab, page  # noqa: F401 (the fixture: both widths)
from tooling.inputs import make_tone

pytestmark = pytest.mark.slow  # a browser

pytest.importorskip("playwright.sync_api")
STOPPED = "(stopped) · "


def test_chat_stop(page):  # noqa: F811
    start_a_long_photo_answer(page)
    page.get_by_role("button", name="Stop").click()
    wait_for(lambda: STOPPED + "vision adapter · first token" in last_answer(page), timeout=30)
    shot(page, f"stop-chat-{page.width}")


def test_photo_by_voice_stop(page):  # noqa: F811
    open_tab(page, "Photo by voice")
    page.locator("#photo-input input[type=file]").set_input_files(str(EXAMPLE_PHOTO))
    page.get_by_label("…or type the question").fill("Describe every detail.")
    page.get_by_role("button", name="Ask about the photo").click()
    answer = page.locator("#photo-answer")
    wait_for(lambda: len(answer.inner_text()) > 40)
    page.locator("#photo-stop").click()
    wait_for(lambda: STOPPED + "vision adapter · first token" in answer.inner_text(), timeout=30)
    shot(page, f"stop-photo-by-voice-{page.width}")


def test_speech_stop(page, tmp_path):  # noqa: F811
    sf.write(tmp_path / "long.wav", make_tone(seconds=240), 16000)  # room for ~1,500 tokens of transcript
    open_tab(page, "Speech")
    page.locator("#speech-input input[type=file]").set_input_files(str(tmp_path / "long.wav"))
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Run", exact=True).click()
    transcript = page.locator("#speech-transcript textarea")
    wait_for(lambda: len(transcript.input_value()) > 40)
    page.locator("#speech-stop").click()
    wait_for(lambda: transcript.input_value().endswith(" (stopped)"), timeout=30)
    shot(page, f"stop-speech-{page.width}")
