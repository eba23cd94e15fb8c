"""The browser app: Chat, Photo by voice, Speech and Meeting tabs. Only Gradio code: every
callback hands Gradio's payloads to the web glue (app/web.py) and shows what comes back."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import gradio as gr

from core.errors import Phi4mmError
from prompts import tasks
from prompts.languages import SPEECH_LANGUAGES
from ui.gpu import gpu
from ui.options import ChatOptions, Shown

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).parent / "examples"
MODEL_EVENTS = {"_submit_fn", "_stream_fn", "chat", "photo_by_voice", "transcribe", "summarize", "live_stop"}
MODEL_GROUP = "gpu"  # the concurrency group of every event that runs the model
LIVE_SUMMARY = "### Summary\n*Recording: the summary appears here when you stop.*"
# The only events a client may call by name; the rest (the ChatInterface's undo/retry helpers
# and the like) serve the page alone and are hidden from the API (app/doors.py refuses them too).
PUBLIC_EVENTS = {"chat", "photo_by_voice", "transcribe", "summarize", "stop_meeting"}
CSS = """
.phi-header h1 { margin-bottom: 0.2em; }
.phi-header p { color: var(--body-text-color-subdued); margin-top: 0; }
footer { display: none !important; }
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
LANGUAGES = list(SPEECH_LANGUAGES.values())
SUMMARY_PRESETS = list(tasks.SUMMARY_FORMATS)
UNDERSTANDING = {label: name for name, (label, _) in tasks.AUDIO_TASKS.items()}  # Speech tab label -> task
# What the page adds to the chat history itself, and takes out again before the history goes back
# to the web glue: the metrics line under an answer and its error notes (neither is an answer).
WARNING = "⚠️ "
FOOTER = "\n\n<sub>⚙ "
INTRO = """# Phi-4-multimodal, on your machine
<p>Chat with text, photos, video and your voice · ask about a photo by speaking · transcribe and
translate speech in eight languages · describe sounds and music · summarise meetings. Nothing leaves
this computer.</p>"""
SIGN_OUT = '<p><a href="/logout" id="sign-out">Sign out</a></p>'  # with a key: ends the sign-in on the server


# Hands-free: the browser's speech synthesis reads the answer (no model, nothing leaves the page),
# less the metrics line and the warning sign; a new answer cuts off one still being read.
READ_ALOUD_JS = f"""(on, text) => {{
  if (!on || !text || !window.speechSynthesis) return;
  const spoken = text.split({json.dumps(FOOTER)})[0].replace({json.dumps(WARNING)}, "").replace(/[*_#`>|]/g, "");
  window.speechSynthesis.cancel();
  window.speechSynthesis.speak(new SpeechSynthesisUtterance(spoken.trim()));
}}"""


def _warning(err: Exception) -> str:
    """Our errors carry a message for the user; anything else is logged and summarised."""
    if isinstance(err, Phi4mmError):
        return f"{WARNING}{err}"
    log.exception("unexpected error in a browser request")
    return f"{WARNING}Something went wrong on the server; it has been logged. Please try again."


def _page_text(shown: Shown) -> str:
    """An answer as the page shows it: the metrics line in small type under it."""
    return shown.text + (f"{FOOTER}{shown.metrics}</sub>" if shown.metrics else "")


def _answers_only(history: list[dict]) -> list[dict]:
    """The chat history less what the page added to it (`_page_text`, `_warning`); its text
    items as plain strings."""
    turns = []
    for turn in history:
        content = turn.get("content")
        items = []
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, dict) and item.get("type") == "text":
                item = item.get("text", "")
            if isinstance(item, str):
                if item.startswith(WARNING):
                    continue
                item = item.split(FOOTER)[0]
            items.append(item)
        turns.append({**turn, "content": items})
    return turns


def _failed(message: str, request: gr.Request | None):
    """The page shows the message where the answer would be (and stays usable: an exception would
    leave the chat box disabled); an API client (gradio_client, which marks its calls) gets it as
    an exception with the same one line, never as if it were the answer."""
    if _from_api(request):
        raise gr.Error(message.removeprefix(WARNING), print_exception=False)
    yield message


def _from_api(request: gr.Request | None) -> bool:
    """gradio_client marks its calls; the page's do not carry the mark."""
    return request is not None and request.headers.get("x-gradio-user") == "api"


def _meeting_outputs(result) -> tuple[str, str, list[str]]:
    """A MeetingResult -> (transcript, summary with its notes, download files)."""
    shown = result.summary + "".join(f"\n\n> ⚠️ {note}" for note in result.notes + result.remarks)
    files = [
        _text_file("transcript.txt", result.transcript_txt()),
        _text_file("transcript.srt", result.transcript_srt()),
        _text_file(f"summary.{result.summary_suffix}", result.summary),
    ]
    return result.transcript_txt(), shown, files


def _text_file(name: str, text: str) -> str:
    """A per-request file for download (its own temporary folder, never shared between users)."""
    path = Path(tempfile.mkdtemp(prefix="phi4mm-")) / name
    path.write_text(text, encoding="utf-8")
    return str(path)


class ChatKeepingPlaceholder(gr.ChatInterface):
    """gr.ChatInterface blanks the message box's placeholder when a message is sent and never puts
    it back, so from the second message on the box gave no hint. (Gradio 6.31, pinned; a browser
    test holds it.)"""

    def _clear_and_save_textbox(self, message):
        return type(self.textbox)("", interactive=False, placeholder=self.textbox.placeholder), message


def build_app(web) -> gr.Blocks:
    """`web` is the web glue (app/web.py's WebApp), which the UI only calls: the UI imports
    nothing from `app/`. Every default on the page comes from the one settings object, as the
    CLI's and the API's do."""
    settings = web.settings
    max_crops, video_frames, concurrency = settings.max_crops, settings.video_frames, settings.inflight()

    @gpu
    def chat(
        message: dict,
        history: list[dict],
        system: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        crops: int,
        frames: int,
        request: gr.Request,
    ):
        options = ChatOptions(system, max_tokens, temperature, top_p, crops, frames)
        api = _from_api(request)
        try:
            for shown in web.chat(message.get("text", ""), message.get("files", []), _answers_only(history), options):
                # the page shows the metrics line under the answer; a client gets it apart from the answer
                yield (shown.text if api else _page_text(shown)), shown.metrics
        except Exception as err:  # the request's boundary: a short message, never a traceback
            yield from ((shown, "") for shown in _failed(_warning(err), request))

    @gpu
    def photo_by_voice(image: str | None, audio: str | None, question: str, request: gr.Request):
        if not image:
            yield from _failed(f"{WARNING}Take or upload a photo first.", request)
            return
        if not audio and not question.strip():
            yield from _failed(f"{WARNING}Record or type a question about the photo.", request)
            return
        try:
            for shown in web.photo_by_voice(image, audio, question, web.default_options()):
                yield _page_text(shown)
        except Exception as err:  # the request's boundary
            yield from _failed(_warning(err), request)

    @gpu
    def transcribe(audio: str | None, task: str, language: str, cot: bool):
        if not audio:
            raise gr.Error("Record or upload some speech first.")
        target = language if task == "Translate" else None
        understand = UNDERSTANDING.get(task)  # an audio understanding preset, or None
        transcript = translation = ""
        try:
            for transcript, translation in web.speech(audio, target, cot and bool(target), understand):
                yield transcript, translation, None
        except Exception as err:  # the request's boundary
            raise gr.Error(_warning(err)) from None
        text = "\n\n".join(t for t in (transcript, translation) if t)
        yield transcript, translation, _text_file("transcript.txt", text)

    @gpu
    def summarize(
        audio: str | None,
        preset: str,
        instruction: str,
        length: float | None,
        unit: str,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        if not audio:
            raise gr.Error("Upload or record a meeting first.")
        try:
            result = web.summarize(
                audio,
                instruction,
                preset,
                int(length) if length else None,
                unit,
                progress=lambda f, desc: progress(f, desc=desc),
                session=request.session_hash,
            )
        except Exception as err:  # the request's boundary
            raise gr.Error(_warning(err)) from None
        return _meeting_outputs(result)

    def stop_meeting(request: gr.Request):
        web.stop_meeting(request.session_hash)

    def live_start(request: gr.Request):
        try:
            transcript = web.live_start(request.session_hash)
        except Exception as err:  # the request's boundary
            raise gr.Error(_warning(err)) from None
        return transcript, LIVE_SUMMARY, None

    def live_chunk(chunk: str | None, request: gr.Request):
        if not chunk:
            return gr.skip()
        try:
            transcript = web.live_feed(request.session_hash, chunk)
            return gr.skip() if transcript is None else transcript
        except Exception as err:  # one bad chunk: say so, keep recording
            gr.Warning(_warning(err))
            return gr.skip()

    def live_close(request: gr.Request):
        web.live_close(request.session_hash)

    @gpu
    def live_stop(preset: str, instruction: str, length: float | None, unit: str, request: gr.Request):
        try:
            result = web.live_finish(request.session_hash, instruction, preset, int(length) if length else None, unit)
        except Exception as err:  # the request's boundary
            raise gr.Error(_warning(err)) from None
        return _meeting_outputs(result)

    with gr.Blocks(title="Phi-4-multimodal") as demo:
        gr.Markdown(INTRO + (SIGN_OUT if web.settings.api_key else ""), elem_classes="phi-header")
        with gr.Tab("Chat"):
            settings = [  # render=False: ChatInterface places them in its Settings accordion
                gr.Textbox(
                    "",
                    label="System prompt",
                    placeholder="Optional. Safety instructions always apply.",
                    lines=2,
                    render=False,
                ),
                gr.Slider(
                    16,
                    4096,
                    value=settings.max_new_tokens,
                    step=16,
                    label="Max new tokens",
                    render=False,
                    elem_id="max-tokens",
                ),
                gr.Slider(
                    0, 2, value=0, step=0.05, label="Temperature (0 = greedy, the model's default)", render=False
                ),
                gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p", render=False),
                gr.Slider(1, 64, value=max_crops, step=1, label="Crop budget per image (fewer = faster)", render=False),
                gr.Slider(1, 64, value=video_frames, step=1, label="Video frames", render=False),
            ]
            # the answer's metrics line apart, for API clients (the page shows it under the answer)
            metrics = gr.Textbox(label="Metrics", visible=False, render=False)
            ChatKeepingPlaceholder(
                fn=chat,
                multimodal=True,
                chatbot=gr.Chatbot(
                    height=520,
                    placeholder="Ask anything, or attach a photo, a video or a voice note.",
                    buttons=["copy"],
                    elem_id="chatbot",
                    show_label=False,
                ),
                textbox=gr.MultimodalTextbox(
                    sources=["upload", "microphone"],
                    file_types=["image", "audio", "video"],
                    file_count="multiple",
                    placeholder="Message, or drop files here",
                    elem_id="chat-input",
                    submit_btn=True,
                    stop_btn=True,
                ),
                additional_inputs=settings,
                additional_inputs_accordion=gr.Accordion("Settings", open=False, render=False),
                additional_outputs=[metrics],
                examples=[
                    [{"text": "What is in this picture?", "files": [str(EXAMPLES / "sunset.png")]}],
                    [{"text": "", "files": [str(EXAMPLES / "question.wav")]}],
                    [{"text": "Write a haiku about the sea.", "files": []}],
                ],
                example_labels=["Describe a photo", "Answer a spoken question", "Just text"],
                api_name="chat",
            )
            metrics.render()
        with gr.Tab("Photo by voice"):
            with gr.Row():
                photo = gr.Image(
                    sources=["upload", "webcam"], type="filepath", label="Photo", height=360, elem_id="photo-input"
                )
                with gr.Column():
                    voice = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label="Spoken question",
                        elem_id="voice-input",
                    )
                    typed = gr.Textbox("", label="…or type the question", placeholder="What am I looking at?")
                    ask = gr.Button("Ask about the photo", variant="primary")
                    read_aloud = gr.Checkbox(
                        False, label="Read the answer aloud (your browser's own voice)", elem_id="read-aloud"
                    )
            answer = gr.Markdown(label="Answer", elem_id="photo-answer")
            asked = ask.click(photo_by_voice, [photo, voice, typed], answer, api_name="photo_by_voice")
            asked.then(None, [read_aloud, answer], None, js=READ_ALOUD_JS, queue=False)
        with gr.Tab("Speech"):
            with gr.Row():
                with gr.Column():
                    speech = gr.Audio(
                        sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="speech-input"
                    )
                    task = gr.Radio(
                        ["Transcribe", "Translate", *UNDERSTANDING],
                        value="Transcribe",
                        label="Task",
                        elem_id="speech-task",
                    )
                    # only a translation has a target language and a chain of thought
                    language = gr.Dropdown(LANGUAGES, value="English", label="Translate to", visible=False)
                    cot = gr.Checkbox(label="Also show the original transcript (chain of thought)", visible=False)
                    run = gr.Button("Run", variant="primary")
                with gr.Column():
                    transcript = gr.Textbox(label="Transcript", lines=8, buttons=["copy"], elem_id="speech-transcript")
                    translation = gr.Textbox(label="Translation", lines=8, buttons=["copy"])
                    # an understanding task answers in the first box, relabelled; it has no translation
                    task.change(
                        lambda chosen: (
                            [gr.update(visible=chosen == "Translate")] * 2
                            + [
                                gr.update(label="Answer" if chosen in UNDERSTANDING else "Transcript"),
                                gr.update(visible=chosen not in UNDERSTANDING),
                            ]
                        ),
                        task,
                        [language, cot, transcript, translation],
                        queue=False,
                    )
                    download = gr.File(label="Download .txt")
            run.click(
                transcribe, [speech, task, language, cot], [transcript, translation, download], api_name="transcribe"
            )
        with gr.Tab("Meeting"):
            with gr.Row():
                with gr.Column():
                    # live captions: the microphone streams a chunk a second; Stop brings the summary
                    live = gr.Audio(
                        sources=["microphone"],
                        streaming=True,
                        type="filepath",
                        label="Live: record the meeting here and watch the transcript grow",
                        elem_id="meeting-live",
                    )
                    meeting = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label="…or a recording to summarise",
                        elem_id="meeting-input",
                    )
                    preset = gr.Radio(SUMMARY_PRESETS, value="bullets", label="Format")
                    instruction = gr.Textbox(
                        "", label="Instruction", placeholder="e.g. List the decisions and who owns them."
                    )
                    with gr.Row():
                        # 0 (or empty) means no limit: a `minimum=1` made the default itself an error
                        length = gr.Number(
                            label="Length (0 = no limit)", value=0, precision=0, minimum=0, elem_id="meeting-length"
                        )
                        unit = gr.Radio(["words", "sentences"], value="words", label="counted in")
                    with gr.Row():
                        go = gr.Button("Summarise", variant="primary")
                        stop = gr.Button("Stop, keep what is done", variant="secondary")
                with gr.Column():
                    summary = gr.Markdown(
                        "### Summary\n*The summary appears here.*", label="Summary", elem_id="meeting-summary"
                    )
                    meeting_transcript = gr.Textbox(label="Transcript", lines=10, elem_id="meeting-transcript")
                    files = gr.File(label="Downloads", file_count="multiple", elem_id="meeting-files")
            go.click(
                summarize,
                [meeting, preset, instruction, length, unit],
                [meeting_transcript, summary, files],
                api_name="summarize",
            )
            stop.click(stop_meeting, None, None, api_name="stop_meeting")
            live.start_recording(live_start, None, [meeting_transcript, summary, files])
            live.stream(live_chunk, live, meeting_transcript, stream_every=1.0, show_progress="hidden")
            live.stop_recording(live_stop, [preset, instruction, length, unit], [meeting_transcript, summary, files])
        demo.unload(live_close)  # a closed page keeps nothing
    # One concurrency group for everything that runs the model, as many at once as the engine decodes
    # together; light events (undo, clear, uploads) never queue behind it. app/event_guard.py queues
    # every event, these included.
    for fn in demo.fns.values():
        if getattr(fn.fn, "__name__", "") in MODEL_EVENTS:
            fn.concurrency_id, fn.concurrency_limit = MODEL_GROUP, concurrency
        if fn.api_name not in PUBLIC_EVENTS:
            fn.api_visibility = "private"
    return demo
