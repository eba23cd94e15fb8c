"""Live captions in the Meeting tab, in a real headless Chromium whose microphone is an espeak-ng
meeting (Chromium's fake capture device): the transcript grows with timestamps while recording
goes on, and at Stop the summary comes from that transcript; the server's metrics show no
segment was transcribed twice. Screenshots go to artifacts/."""

from __future__ import annotations

import re
import time

import pytest

from tests.api.test_metrics import scrape
from tests.ui.conftest import CHROMIUM, FLAGS
from tests.ui.test_browser import open_app, shot, wait_for
from tooling.inputs import write_meeting

pytestmark = pytest.mark.slow  # a browser

STAMP = re.compile(r"^\[(\d\d:\d\d:\d\d) - (\d\d:\d\d:\d\d)\] ", re.MULTILINE)


@pytest.fixture(scope="module")
def live_page(web_server, tmp_path_factory):
    playwright_api = pytest.importorskip("playwright.sync_api")
    folder = tmp_path_factory.mktemp("mic")
    write_meeting(folder / "meeting.wav", 0.75, folder)  # 45 s of sentences and pauses, looped by Chromium
    microphone = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={folder / 'meeting.wav'}",
    ]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS + microphone)
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, permissions=["microphone"])
        page = context.new_page()
        open_app(page, web_server)
        yield page
        browser.close()


def requests_by_adapter(url: str) -> dict[str, float]:
    return {
        dict(labels)["adapter"]: value
        for (name, labels), value in scrape(url).items()
        if name == "phi4mm_adapter_requests_total"
    }


def test_the_transcript_grows_while_recording_and_the_summary_comes_at_stop(live_page, web_server):
    page = live_page
    before = requests_by_adapter(web_server)
    page.get_by_role("tab", name="Meeting").click()
    page.locator("#meeting-live button.record-button").click()
    transcript = page.locator("#meeting-transcript textarea")
    seen = []

    def segments_shown(count):
        text = transcript.input_value()
        if not seen or seen[-1] != text:
            seen.append(text)
        return len(STAMP.findall(text)) >= count

    started = time.time()
    wait_for(lambda: segments_shown(1), timeout=40, step=0.25)
    first_at = time.time() - started
    wait_for(lambda: segments_shown(2), timeout=40, step=0.25)  # it grows while recording goes on
    shot(page, "meeting-live-recording")
    assert 8 < first_at < 35  # the first segment closed at a pause after about 10 s, not at Stop
    stop = page.locator("#meeting-live button", has_text="Stop")
    wait_for(stop.is_visible, timeout=5)  # still recording (the button was seen re-drawn for a moment)
    stamps = STAMP.findall(seen[-1])
    assert stamps[0][0] == "00:00:00" and stamps[1][0] == stamps[0][1]  # back to back, with times

    stop.first.click()
    summary = page.locator("#meeting-summary")
    wait_for(lambda: "appears here" not in summary.inner_text() and summary.inner_text().strip(), timeout=90)
    final = transcript.input_value()
    segments = len(STAMP.findall(final))
    assert segments >= 3 and "…" not in final  # the open segment was transcribed at Stop
    downloads = page.locator("#meeting-files")
    wait_for(lambda: all(name in downloads.inner_text() for name in ("transcript\n.srt", "summary\n.md")), timeout=10)
    shot(page, "meeting-live-summary")

    after = requests_by_adapter(web_server)
    transcriptions = after.get("speech", 0) - before.get("speech", 0)
    summaries = after.get("base", 0) - before.get("base", 0)
    assert transcriptions == segments  # each segment once: nothing transcribed again at Stop
    assert summaries == 1  # the summary, made from the transcript's text
