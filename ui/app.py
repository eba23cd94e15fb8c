"""The browser app: its header and its tabs (Chat, Photo by voice, Speech, Meeting), each built by
its own function in its own file. Only Gradio code: every callback hands Gradio's payloads to the
web glue (app/web.py) and shows what comes back."""

from __future__ import annotations

import os

import gradio as gr

from ui.chat_tab import chat_tab
from ui.gpu import join_model_group
from ui.meeting_tab import meeting_tab
from ui.photo_tab import photo_tab
from ui.speech_tab import speech_tab

CSS = """
.phi-header h1 { margin-bottom: 0.2em; }
.phi-header p { color: var(--body-text-color-subdued); margin-top: 0; }
footer { display: none !important; }
@media (max-width: 640px) {
  /* a phone: a one-line header; tabs narrow enough that none hides behind Gradio's "⋯" (it measures
  the hidden copies, styled here too); the kept chats under the chat, not above it */
  .phi-header h1 { font-size: 1.1rem; margin: 0; }
  .phi-header p:not(:has(#sign-out)) { display: none; }
  .tab-container button { padding: 0 5px; font-size: 0.85rem; min-width: 0; }
  #kept-chats { order: 2; }
}
"""


class Family(gr.themes.Font):
    """A font family written into the CSS as given. Fonts must be Font objects, not strings
    (`launch()` compares the theme with Gradio's own themes, which reads `.name`), but Font quotes
    its name, and a quoted 'system-ui' is no longer the system's font."""

    def __str__(self) -> str:
        return self.name


# System fonts only: the app must look right with no internet (Gradio's default fetches Google Fonts).
THEME = gr.themes.Soft(
    primary_hue="indigo",
    font=[Family(name) for name in ("system-ui", "Segoe UI", "Roboto", "sans-serif")],
    font_mono=[Family(name) for name in ("ui-monospace", "Menlo", "monospace")],
)
INTRO = """# Phi-4-multimodal, on your machine
<p>Chat with text, photos, video and your voice · ask about a photo by speaking · transcribe and
translate speech in eight languages · describe sounds and music · summarise meetings.{local}</p>"""
LOCAL = " Nothing leaves this computer."
SIGN_OUT = '<p><a href="/logout" id="sign-out">Sign out</a></p>'  # with a key: ends the sign-in on the server


def build_app(web) -> gr.Blocks:
    """`web` is the web glue (app/web.py's WebApp), which the UI only calls: the UI imports
    nothing from `app/`. Every default on the page comes from the one settings object, as the
    CLI's and the API's do."""
    # the claim holds only when the model runs here: not with a remote backend, nor on a Space
    local = web.settings.backend == "local" and not os.environ.get("SPACE_ID")
    with gr.Blocks(title="Phi-4-multimodal") as page:
        intro = INTRO.format(local=LOCAL if local else "")
        gr.Markdown(intro + (SIGN_OUT if web.settings.api_key else ""), elem_classes="phi-header")
        with gr.Tab("Chat"):
            public = chat_tab(web)
        with gr.Tab("Photo by voice"):
            public += photo_tab(web)
        with gr.Tab("Speech"):
            public += speech_tab(web)
        with gr.Tab("Meeting"):
            public += meeting_tab(web, page)
    # The events that run the model (`@gpu`) share one concurrency group: at most `inflight()` of
    # them at once, what the engine decodes together (max_batch) or a remote backend is sent;
    # light events (undo, clear, uploads) never queue behind them. app/event_guard.py queues every
    # event, these included, and refuses a page where a model event is outside the group.
    join_model_group(page, web.settings.inflight())
    # Only the events the tabs name may be called by a client; the rest (the ChatInterface's
    # undo/retry helpers and the like) serve the page alone (app/doors.py refuses them too).
    for event in page.fns.values():
        if event.api_name not in public:
            event.api_visibility = "private"
    return page
