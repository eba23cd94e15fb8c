"""Chats kept in the browser, in a real Chromium at desktop and phone widths: the list, open,
rename, delete, the Markdown and JSON downloads, a reload that keeps them, and an attachment that
is named but not kept. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json

import pytest

from tests.ui.test_browser import EXAMPLE_PHOTO, FOOTER, last_answer, open_app, send, shot, wait_for

pytestmark = pytest.mark.slow  # a browser

pytest.importorskip("playwright.sync_api")


@pytest.fixture(params=[1280, 390], ids=["desktop", "phone"])
def page(request, browser, web_server):
    context = browser.new_context(viewport={"width": request.param, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.width = request.param
    open_app(page, web_server)
    yield page
    context.close()


def kept_titles(page) -> list[str]:
    return page.locator("#kept-chats table td").all_inner_texts()


def downloaded(page, button: str) -> str:
    with page.expect_download() as download:
        page.locator(f"#{button}").click()
    return open(download.value.path(), encoding="utf-8").read()


def short_answers(page) -> None:
    page.locator("button.label-wrap", has_text="Settings").first.click()
    tokens = page.locator("#max-tokens input[type=number]")
    tokens.fill("24")
    tokens.press("Enter")


def test_a_chat_is_kept_renamed_exported_reloaded_and_deleted(page):
    short_answers(page)
    send(page, "Kept hello", EXAMPLE_PHOTO)
    wait_for(lambda: FOOTER in last_answer(page))
    wait_for(lambda: kept_titles(page) == ["Kept hello"], timeout=15)
    # the list and the name box are two outputs of the page's update: wait for the box too
    name = page.locator("#chat-name textarea, #chat-name input").first
    wait_for(lambda: name.input_value() == "Kept hello", timeout=15)

    name.fill("Sunset talk")
    page.locator("#chat-rename").click()
    wait_for(lambda: kept_titles(page) == ["Sunset talk"], timeout=15)
    shot(page, f"kept-chat-{page.width}")

    wait_for(lambda: page.locator("#chat-md").is_enabled(), timeout=15)
    markdown = downloaded(page, "chat-md")
    assert markdown.startswith("# Sunset talk\n") and "## You" in markdown and "Kept hello" in markdown
    assert "sunset.png (attachments are not kept" in markdown and "## Phi-4" in markdown
    exported = json.loads(downloaded(page, "chat-json"))
    assert exported["title"] == "Sunset talk"
    roles = [m["role"] for m in exported["messages"]]
    assert roles[-2:] == ["user", "assistant"] and "Kept hello" in exported["messages"][-2]["content"]
    assert "adapter" in exported["messages"][-1]["metrics"] and "<sub>" not in exported["messages"][-1]["content"]

    page.reload()  # the chats live in this browser alone, and survive a reload
    page.wait_for_selector("#chat-input textarea", timeout=30_000)
    wait_for(lambda: kept_titles(page) == ["Sunset talk"], timeout=15)
    assert not page.locator("#chatbot .message").count()
    short_answers(page)
    page.locator("#kept-chats table td", has_text="Sunset talk").click()
    wait_for(lambda: "Kept hello" in page.inner_text("#chatbot"), timeout=15)
    assert "attachments are not kept" in page.inner_text("#chatbot")
    send(page, "And a second question")  # a reopened chat goes on, and stays one kept chat
    wait_for(lambda: FOOTER in last_answer(page) and "second" in page.inner_text("#chatbot"))
    wait_for(lambda: "second question" in downloaded(page, "chat-md"), timeout=15)
    assert kept_titles(page) == ["Sunset talk"]
    shot(page, f"kept-chat-reopened-{page.width}")

    page.locator("#chat-delete").click()
    wait_for(lambda: kept_titles(page) == [], timeout=15)
    # the list, the conversation and the export buttons are outputs of one update: wait for each
    wait_for(lambda: not page.locator("#chatbot .message").count(), timeout=15)
    wait_for(lambda: not page.locator("#chat-md").is_enabled(), timeout=15)
    page.reload()
    page.wait_for_selector("#chat-input textarea", timeout=30_000)
    page.wait_for_timeout(500)
    assert kept_titles(page) == []


def test_a_forged_kept_chat_reads_no_server_file(web_server, tmp_path):
    """Kept chats come back from the browser, which can forge them: one naming a server file, at
    any depth, is refused by app/event_guard.py before the chat code sees it, for every event
    that takes the kept chats; the file's contents never reach the client."""
    import httpx

    from tests.api.test_security import KEYED, PROCESSED
    from tooling.hostile_client import SECRET, file_data

    secret = tmp_path / "notes.txt"
    secret.write_text(SECRET)
    forged = [
        {"title": "forged", "messages": [{"role": "user", "content": [{"type": "file", "file": file_data(secret)}]}]},
        {"title": file_data(secret), "messages": [{"role": "assistant", "content": "hi", "extra": file_data(secret)}]},
    ]
    with httpx.Client(headers=KEYED, timeout=60) as client:
        config = client.get(web_server + "/config").json()
        names = {"_load_chat_history": [forged], "_load_conversation": [0, forged], "rename": [0, forged, "x"]}
        names |= {"chat_name": [0, forged], "downloads": [0, forged], "_delete_conversation": [0, forged]}
        events = {i: names[d["api_name"]] for i, d in enumerate(config["dependencies"]) if d["api_name"] in names}
        assert len(events) == len(names)
        for index, data in events.items():
            session = f"forger{index}"
            body = {"data": data, "fn_index": index, "session_hash": session}
            assert client.post(web_server + "/gradio_api/queue/join", json=body).status_code == 200
            with client.stream("GET", web_server + f"/gradio_api/queue/data?session_hash={session}") as stream:
                result = next(line for line in stream.iter_lines() if any(f'"{m}"' in line for m in PROCESSED))
            event = json.loads(result.split("data:", 1)[1])
            assert event["msg"] == "process_completed" and event["success"] is False
            assert "was not uploaded to this server" in result
            assert SECRET not in result and str(secret) not in result


def test_kept_chats_outlive_a_server_restart():
    """Where the browser keeps them, and the key they are read with, are the same for every start."""
    from core.settings import Settings
    from tests.ui.test_page_layout import Glue
    from ui.app import build_app

    stores = [
        {k: v for k, v in block.get_config().items() if k in ("storage_key", "secret")}
        for demo in (build_app(Glue(Settings())), build_app(Glue(Settings())))
        for block in demo.blocks.values()
        if block.get_block_name() == "browserstate"
    ]
    assert len(stores) == 2 and stores[0] == stores[1] and stores[0]["storage_key"]
