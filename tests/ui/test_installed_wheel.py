"""phi4mm as a user installs it: the wheel built from the repository, installed NON-editable in a
clean environment (tooling/clean_venv.py), served by that environment's own `phi4mm serve`, and
an example of the chat clicked in Chromium. The examples used to be missing from the wheel: a
broken thumbnail, and a click showed a toast with the server's site-packages path."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tooling.clean_venv import build_wheel, clean_venv, pip, run
from tooling.server import server_process

pytestmark = pytest.mark.slow  # a wheel built, installed and served, then a browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "artifacts", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"
)

pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The clean environment's folder, phi4mm installed there from its wheel."""
    folder = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(shutil.copytree(ROOT, folder / "source", ignore=NOT_SOURCE), folder / "dist")
    python = clean_venv(folder / "venv")
    pip(python, "install", "--no-deps", "--no-index", str(wheel))
    return folder / "venv"


def test_the_wheel_ships_the_examples_and_a_click_on_one_is_answered(installed, tiny_checkpoint, browser, tmp_path):
    code = "import app, ui.chat_tab; print(app.__file__, ui.chat_tab.EXAMPLES)"
    where = run(installed / "bin" / "python", "-c", code, cwd=tmp_path)  # not the checkout: "" is on sys.path
    app_file, examples = where.split()
    assert app_file.startswith(str(installed)), where  # phi4mm comes from the new environment
    assert {"sunset.png", "question.wav"} <= {path.name for path in Path(examples).iterdir()}

    with pytest.MonkeyPatch.context() as env:
        env.delenv("PYTHONPATH", raising=False)  # it would reach the source tree
        command = (installed / "bin" / "phi4mm", "serve")
        log = tmp_path / "serve.log"
        with server_process(tiny_checkpoint, log, command, cwd=tmp_path, max_new_tokens="64") as (url, _):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(url + "/", wait_until="domcontentloaded")
            page.get_by_text("Describe a photo").click()
            answer = page.locator("#chatbot .bot.message").last
            answer.get_by_text(re.compile("vision adapter")).wait_for(timeout=60_000)
            assert page.locator("#chatbot .user img").count() == 1  # the example's photo, shown
            assert page.locator(".toast-body").count() == 0  # no error toast (it showed a server path)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "wheel-example-answered.png"), full_page=True)
            context.close()
