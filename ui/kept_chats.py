"""Chats kept in the browser: a list of past chats (open one, rename, delete) and each chat as a
Markdown or JSON download. Gradio's own `save_history` keeps them in the browser's localStorage
(`gr.BrowserState`), never on the server, and this keeps its list, its saving after each answer
and its Clear; what it stores is ours:

- text only. An attachment lives in the server's private folder, which is swept, so a kept path
  would soon name nothing (and every later event carrying it would be refused by
  app/event_guard.py); a note in its place says it was not kept, and localStorage stays small.
- what comes back from the browser is the client's to forge: only the shape below is read
  (anything else is dropped), and it is never a path (app/event_guard.py refuses a "path" at any
  depth of an event's inputs before this code runs).

A kept chat: {"title": str, "messages": [{"role": "user" | "assistant", "content": str}]}.
"""

from __future__ import annotations

import json
import os

import gradio as gr

from ui.page_text import FOOTER, text_file

STORAGE_KEY = "phi4mm-kept-chats"
MAX_CHATS = 100  # localStorage holds about 5 MB per site
TITLE_CHARS = 60
ROLES = {"user": "You", "assistant": "Phi-4"}
NOTE = "📎 "  # begins the line that stands for an attachment


def kept_messages(conversation) -> list[dict]:
    """The chatbot's messages as kept: text, and a note for each attachment."""
    kept = []
    for turn in conversation or []:
        content = turn.get("content")
        texts = []
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and item.get("type") == "text":
                texts.append(str(item.get("text", "")))
            elif isinstance(item, dict):
                texts.append(f"{NOTE}*{_file_name(item)} (attachments are not kept with a saved chat)*")
        text = "\n\n".join(t for t in texts if t)
        if turn.get("role") not in ROLES or not text:
            continue
        if kept and kept[-1]["role"] == turn["role"]:  # the chatbot shows each file as a message of its own
            kept[-1]["content"] += "\n\n" + text
        else:
            kept.append({"role": turn["role"], "content": text})
    return kept


def _file_name(item: dict) -> str:
    file = item.get("file") if isinstance(item.get("file"), dict) else item
    return str(file.get("orig_name") or os.path.basename(str(file.get("path") or "")) or "a file")


def kept_chats(saved) -> list[dict]:
    """The browser's kept chats, as far as they have the shape of one; the rest is dropped."""
    chats = []
    for chat in saved if isinstance(saved, list) else []:
        messages = chat.get("messages") if isinstance(chat, dict) else None
        messages = [
            {"role": m["role"], "content": m["content"]}
            for m in (messages if isinstance(messages, list) else [])
            if isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
        ]
        if messages:
            title = chat.get("title") if isinstance(chat.get("title"), str) else ""
            chats.append({"title": title.strip()[:TITLE_CHARS] or first_words(messages), "messages": messages})
    return chats[:MAX_CHATS]


def first_words(messages: list[dict]) -> str:
    """A new chat's name: the start of its first message's text."""
    lines = (line.strip() for m in messages if m["role"] == "user" for line in m["content"].splitlines())
    line = next((line for line in lines if line and not line.startswith(NOTE)), "Chat")
    return line if len(line) <= 40 else line[:40] + "…"


def chosen(index, chats: list[dict]) -> int | None:
    """A chat's index as the client sent it, if it names one."""
    return index if isinstance(index, int) and 0 <= index < len(chats) else None


def answer_and_metrics(text: str) -> tuple[str, str]:
    """A kept answer's text and its metrics line (the page shows it in small type under the answer)."""
    answer, _, metrics = text.partition(FOOTER)
    return answer, metrics.removesuffix("</sub>")


def as_markdown(chat: dict) -> str:
    lines = [f"# {chat['title']}", ""]
    for message in chat["messages"]:
        text, metrics = answer_and_metrics(message["content"])
        lines += [f"## {ROLES[message['role']]}", "", text, ""] + ([f"*{metrics}*", ""] if metrics else [])
    return "\n".join(lines)


def as_json(chat: dict) -> str:
    messages = []
    for message in chat["messages"]:
        text, metrics = answer_and_metrics(message["content"])
        messages.append({"role": message["role"], "content": text} | ({"metrics": metrics} if metrics else {}))
    return json.dumps({"title": chat["title"], "messages": messages}, ensure_ascii=False, indent=2)


def download(chat: dict, suffix: str, text: str) -> str:
    """A file for download named after the chat."""
    name = "".join(c if c.isalnum() or c in " -_" else "_" for c in chat["title"]).strip() or "chat"
    return text_file(f"{name[:40]}.{suffix}", text)


class KeptChatsInterface(gr.ChatInterface):
    """gr.ChatInterface(save_history=True) keeping chats in the shape above, with a name box,
    Rename, Delete and the two downloads under its list. (Gradio 6.31, pinned: these override its
    history hooks; the browser tests hold them.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, save_history=True, **kwargs)
        # Gradio names the store after a component id and encrypts it with a secret made at each start,
        # so a server restart (or a new release's layout) lost every chat. The secret goes to every
        # page in /config, so it protects nothing: fixed ones keep the chats.
        self.saved_conversations.storage_key = STORAGE_KEY
        self.saved_conversations.secret = STORAGE_KEY

    def _render_history_area(self):
        # Gradio's own, less the New chat icon (a file in Gradio's package, which this server does not serve)
        with gr.Column(scale=1, min_width=200, elem_id="kept-chats"):
            self.new_chat_button = gr.Button("New chat", variant="primary", size="md", elem_id="chat-new")
            self.chat_history_dataset = gr.Dataset(
                components=[gr.Textbox(visible=False)], show_label=False, layout="table", type="index"
            )
            self.chat_name = gr.Textbox(label="Chat name", max_lines=1, elem_id="chat-name")
            with gr.Row():
                self.rename_button = gr.Button("Rename", size="sm", min_width=60, elem_id="chat-rename")
                self.delete_button = gr.Button("Delete", size="sm", min_width=60, variant="stop", elem_id="chat-delete")
            with gr.Row():
                self.markdown_button = gr.DownloadButton(
                    "Markdown", size="sm", min_width=60, interactive=False, elem_id="chat-md"
                )
                self.json_button = gr.DownloadButton(
                    "JSON", size="sm", min_width=60, interactive=False, elem_id="chat-json"
                )

    def _save_conversation(self, index, conversation, saved):
        chats, messages = kept_chats(saved), kept_messages(conversation)
        if not messages:
            return index, chats
        if (index := chosen(index, chats)) is not None:
            chats[index]["messages"] = messages
        else:
            chats.insert(0, {"title": first_words(messages), "messages": messages})
            index = 0
        return index, chats[:MAX_CHATS]

    def _delete_conversation(self, index, saved):
        chats = kept_chats(saved)
        if (index := chosen(index, chats)) is not None:
            chats.pop(index)
        return None, chats

    def _load_chat_history(self, conversations):
        return gr.Dataset(samples=[[chat["title"]] for chat in kept_chats(conversations)])

    def _load_conversation(self, index, conversations):
        chats = kept_chats(conversations)
        index = chosen(index, chats)
        return index, gr.Chatbot(value=chats[index]["messages"] if index is not None else [])

    def _setup_events(self) -> None:
        super()._setup_events()
        current = [self.conversation_id, self.saved_conversations]
        self.rename_button.click(rename, current + [self.chat_name], [self.saved_conversations])
        self.delete_button.click(self._delete_conversation, current, current).then(
            lambda: ([], []), None, [self.chatbot, self.chatbot_state]
        )
        # the name box changes with the open chat only, never under a user typing a new name
        self.conversation_id.change(chat_name, current, [self.chat_name])
        files = [self.markdown_button, self.json_button]
        gr.on([self.conversation_id.change, self.saved_conversations.change], downloads, current, files)


def rename(index, saved, name: str):
    chats = kept_chats(saved)
    if (index := chosen(index, chats)) is not None and name.strip():
        chats[index]["title"] = name.strip()[:TITLE_CHARS]
    return chats


def chat_name(index, saved) -> str:
    chats = kept_chats(saved)
    return chats[index]["title"] if (index := chosen(index, chats)) is not None else ""


def downloads(index, saved):
    """The open chat as Markdown and as JSON; nothing to download before a chat is kept."""
    chats = kept_chats(saved)
    if (index := chosen(index, chats)) is None:
        off = gr.DownloadButton(value=None, interactive=False)
        return off, off
    chat = chats[index]
    return (
        gr.DownloadButton(value=download(chat, "md", as_markdown(chat)), interactive=True),
        gr.DownloadButton(value=download(chat, "json", as_json(chat)), interactive=True),
    )
