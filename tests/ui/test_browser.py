"""The browser app in a real headless Chromium (Debian's, driven by Playwright): a message with a
photo streams in with its metrics, Stop stops a long answer, two sessions never mix, and bad
uploads get a clear message while the app keeps working. Screenshots go to artifacts/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import API_KEY
from tooling.inputs import make_photo, write_video_with_speech

pytestmark = pytest.mark.slow  # a browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
EXAMPLE_PHOTO = ROOT / "ui" / "examples" / "sunset.png"
FOOTER = "adapter · first token"

pytest.importorskip("playwright.sync_api")


@pytest.fixture
def page(browser, web_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    open_app(page, web_server)
    yield page
    context.close()


def open_app(page, url):
    """Signs in with the server's key (it locks the browser app too), then opens the app."""
    page.goto(url + "/", wait_until="domcontentloaded")
    if "/login" in page.url:
        page.fill("input[name=key]", API_KEY)
        page.click("button[type=submit]")
    page.wait_for_selector("#chat-input textarea", timeout=30_000)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def send(page, text: str, *files: Path) -> None:
    # the box takes nothing while the last answer's event runs (it is made non-interactive, and an
    # error's text shows before the event ends): a file set then never appeared on a loaded machine
    page.wait_for_selector("#chat-input textarea:not([disabled])", timeout=60_000)
    if files:
        page.set_input_files("#chat-input input[type=file]", [str(f) for f in files])
        # 30 s: on a fresh clone's full run an upload right after a refused 41 MB one took over 10
        page.wait_for_selector("#chat-input img, #chat-input .thumbnail-item", timeout=30_000)
    page.fill("#chat-input textarea", text)
    page.keyboard.press("Enter")


def last_answer(page) -> str:
    bots = page.locator("#chatbot .bot.message")
    return bots.last.inner_text() if bots.count() else ""


def wait_for(condition, timeout: float = 60, step: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def test_photo_message_streams_in_with_metrics(page):
    shot(page, "01-empty-chat")
    send(page, "What is in this picture?", EXAMPLE_PHOTO)
    lengths = []

    def finished():
        text = last_answer(page)
        if not lengths or lengths[-1] != len(text):
            lengths.append(len(text))
        return FOOTER in text

    wait_for(finished, step=0.02)
    streamed = lengths[2:]  # after Gradio's brief pending placeholder
    assert len(streamed) >= 3 and streamed == sorted(streamed), lengths  # it arrived in growing pieces
    assert "vision adapter" in last_answer(page) and "tokens/s" in last_answer(page)
    assert page.locator("#chatbot .user img").count() == 1  # the photo is shown in the user's turn
    shot(page, "02-photo-answer")


def test_a_video_is_seen_and_heard(page, tmp_path):
    """An MP4 with an espeak-ng soundtrack in the chat box: its frames and its sound go to the
    model together (their token counts are checked in tests/media/test_video.py)."""
    write_video_with_speech(tmp_path / "spoken.mp4", "The red ball rolls under the kitchen table.", tmp_path)
    page.locator("button.label-wrap", has_text="Settings").first.click()
    tokens = page.locator("#max-tokens input[type=number]")
    tokens.fill("24")  # a short answer: the screenshot shows the clip and the whole answer
    tokens.press("Enter")
    send(page, "What happens, and what is said?", tmp_path / "spoken.mp4")
    wait_for(lambda: FOOTER in last_answer(page))
    assert "vision adapter" in last_answer(page) and "left out" not in last_answer(page)
    assert page.locator("#chatbot .user video").count() == 1  # the clip plays in the user's turn
    shot(page, "chat-video-with-sound")


def cancelled_generations(url: str) -> int:
    import json
    import urllib.request

    return json.load(urllib.request.urlopen(url + "/health", timeout=5))["finished"].get("cancelled", 0)


def start_a_long_photo_answer(page) -> None:
    """A 4096-token answer about the example photo, well under way."""
    page.locator("button.label-wrap", has_text="Settings").first.click()
    tokens = page.locator("#max-tokens input[type=number]")
    tokens.fill("4096")
    tokens.press("Enter")
    send(page, "Describe every detail.", EXAMPLE_PHOTO)
    wait_for(lambda: len(last_answer(page)) > 40)


def test_stop_stops_a_long_answer_and_the_app_keeps_working(page, web_server, tmp_path):
    cancelled_before = cancelled_generations(web_server)
    start_a_long_photo_answer(page)
    page.get_by_role("button", name="Stop").click()
    stopped = wait_for(lambda: "(stopped)" in (text := last_answer(page)) and text)
    assert len(stopped) < 4000  # far short of 4096 tokens
    assert "⚙ (stopped) · vision adapter · first token" in stopped  # marked, with its metrics
    wait_for(lambda: cancelled_generations(web_server) > cancelled_before, timeout=30)  # the engine stopped too
    shot(page, "03-stopped")
    tokens = page.locator("#max-tokens input[type=number]")
    tokens.fill("32")
    tokens.press("Enter")
    again = tmp_path / "again.png"  # a browser fires no change event for re-selecting the same file
    shutil.copy(EXAMPLE_PHOTO, again)
    answers = page.locator("#chatbot .bot.message")
    before = answers.count()
    send(page, "And now briefly?", again)
    # the slot was freed: the next answer completes (the stopped one carries the footer too)
    wait_for(lambda: answers.count() > before and FOOTER in last_answer(page) and "(stopped)" not in last_answer(page))
    assert answers.nth(before - 1).inner_text() == stopped  # no more text came to the stopped answer meanwhile


def test_two_sessions_never_mix(browser, web_server, tmp_path):
    alpha_photo, bravo_photo = tmp_path / "alpha.png", tmp_path / "bravo.png"  # not the example photo,
    make_photo(300, 200, seed=7).save(alpha_photo)  # whose cached URL every page shows
    make_photo(300, 200, seed=5).save(bravo_photo)
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pages.append(context.new_page())
        open_app(pages[-1], web_server)
    alpha, bravo = pages
    send(alpha, "alpha question", alpha_photo)
    send(bravo, "bravo question", bravo_photo)
    for page in pages:
        wait_for(lambda page=page: FOOTER in last_answer(page))
    alpha_text, bravo_text = alpha.inner_text("#chatbot"), bravo.inner_text("#chatbot")
    assert "alpha question" in alpha_text and "bravo" not in alpha_text
    assert "bravo question" in bravo_text and "alpha" not in bravo_text
    alpha_image = alpha.locator("#chatbot .user img").first.get_attribute("src")
    assert alpha_image and alpha_image not in bravo.content()
    shot(alpha, "04-session-alpha")
    shot(bravo, "05-session-bravo")
    for page in pages:
        page.context.close()


def test_oversized_and_corrupt_uploads_get_clear_messages(page, tmp_path):
    big = tmp_path / "huge_photo.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * (41 * 1024 * 1024))  # over the server's 40 MB test cap
    page.set_input_files("#chat-input input[type=file]", str(big))
    toast = page.wait_for_selector(".toast-body", timeout=15_000)
    assert 'exceed the maximum allowed size of 40.0 Mb: "huge_photo.png"' in toast.inner_text()
    shot(page, "06-oversized")

    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"this is not really a picture" * 10)
    send(page, "What is this?", corrupt)
    wait_for(lambda: "⚠️" in last_answer(page))
    assert "The image could not be decoded" in last_answer(page)
    shot(page, "07-corrupt")
    send(page, "Try this one instead.", EXAMPLE_PHOTO)
    wait_for(lambda page=page: FOOTER in last_answer(page))  # the app keeps working


@pytest.mark.parametrize("tab", ["Photo by voice", "Speech", "Meeting"])
def test_other_tabs_render(page, tab):
    page.get_by_role("tab", name=tab).click()
    page.wait_for_timeout(500)
    shot(page, f"tab-{tab.lower().replace(' ', '-')}")
    assert page.get_by_role("tabpanel").first.is_visible()


def test_the_speech_tab_describes_sounds(page, tmp_path):
    """An audio understanding preset: the first box becomes the answer, the translation box goes."""
    from tooling.inputs import make_tone

    sf.write(tmp_path / "tone.wav", make_tone(seconds=2), 16000)
    page.get_by_role("tab", name="Speech").click()
    page.locator("#speech-task").get_by_label("Describe the sounds").check()
    page.locator("#speech-input input[type=file]").set_input_files(str(tmp_path / "tone.wav"))
    page.get_by_role("button", name="Run").click()
    answer = page.locator("#speech-transcript textarea")
    wait_for(lambda: answer.input_value().strip())
    assert page.locator("#speech-transcript").get_by_text("Answer", exact=True).is_visible()
    assert not page.locator("#speech-translation").is_visible()
    shot(page, "speech-describe-sounds")


SPEECH_SPY = """
window.__spoken = [];
if (window.speechSynthesis) {
  const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
  window.speechSynthesis.speak = (utterance) => {
    window.__spoken.push(utterance.text);
    try { speak(utterance); } catch (e) {}
  };
}
"""


def test_photo_by_voice_reads_the_answer_aloud_only_when_asked(browser, web_server):
    """The browser's own speech synthesis, off by default: nothing is spoken until the box is
    ticked; then the answer is, without its metrics line."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(SPEECH_SPY)
    page = context.new_page()
    open_app(page, web_server)
    page.get_by_role("tab", name="Photo by voice").click()
    page.locator("#photo-input input[type=file]").set_input_files(str(EXAMPLE_PHOTO))
    page.get_by_label("…or type the question").fill("What colour is the sky?")
    answer = page.locator("#photo-answer")
    ask = page.get_by_role("button", name="Ask about the photo")
    read_aloud = page.locator("#read-aloud input[type=checkbox]")
    assert not read_aloud.is_checked()  # off by default

    ask.click()
    wait_for(lambda: FOOTER in answer.inner_text())
    page.wait_for_timeout(500)
    assert page.evaluate("window.__spoken") == []

    read_aloud.check()
    ask.click()
    spoken = wait_for(lambda: page.evaluate("window.__spoken"))  # once the answer has finished
    text, metrics = answer.inner_text().split("\n\n⚙ ")
    assert spoken == [text]  # the answer, once, without its metrics line
    assert "adapter" in metrics
    shot(page, "photo-by-voice-read-aloud")
    context.close()
