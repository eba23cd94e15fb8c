"""The browser app: Chat, Photo by voice, Speech and Meeting tabs. Only Gradio code: every
callback hands Gradio's payloads to the web glue (app/web.py) and shows what comes back."""

from __future__ import annotations

import json
import os

import gradio as gr

from prompts import tasks
from prompts.languages import SPEECH_LANGUAGES
from ui.chat_tab import chat_tab
from ui.gpu import gpu
from ui.page_text import FOOTER, STOPPED, WARNING, failed, page_text, refusal, text_file, warning

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
LANGUAGES = list(SPEECH_LANGUAGES.values())
SUMMARY_PRESETS = list(tasks.SUMMARY_FORMATS)
UNDERSTANDING = {label: name for name, (label, _) in tasks.AUDIO_TASKS.items()}  # Speech tab label -> task
INTRO = """# Phi-4-multimodal, on your machine
<p>Chat with text, photos, video and your voice · ask about a photo by speaking · transcribe and
translate speech in eight languages · describe sounds and music · summarise meetings.{local}</p>"""
LOCAL = " Nothing leaves this computer."
# what the Speech tab's download is called, by task (an understanding task's answer is no transcript)
DOWNLOAD_NAMES = {"Transcribe": "transcript.txt", "Translate": "translation.txt"} | {
    label: f"{name}-answer.txt" for label, name in UNDERSTANDING.items()
}
SIGN_OUT = '<p><a href="/logout" id="sign-out">Sign out</a></p>'  # with a key: ends the sign-in on the server


# Hands-free: the browser's speech synthesis reads the answer (no model, nothing leaves the page),
# less the metrics line and the warning sign; a new answer cuts off one still being read.
READ_ALOUD_JS = f"""(on, text) => {{
  if (!on || !text || !window.speechSynthesis) return;
  const spoken = text.split({json.dumps(FOOTER)})[0].replace({json.dumps(WARNING)}, "").replace(/[*_#`>|]/g, "");
  window.speechSynthesis.cancel();
  window.speechSynthesis.speak(new SpeechSynthesisUtterance(spoken.trim()));
}}"""


def _meeting_outputs(result) -> tuple[str, str, list[str]]:
    """A MeetingResult -> (transcript, summary with its notes, download files)."""
    shown = result.summary + "".join(f"\n\n> ⚠️ {note}" for note in result.notes + result.remarks)
    files = [
        text_file("transcript.txt", result.transcript_txt()),
        text_file("transcript.srt", result.transcript_srt()),
        text_file(f"summary.{result.summary_suffix}", result.summary),
    ]
    return result.transcript_txt(), shown, files


def build_app(web) -> gr.Blocks:
    """`web` is the web glue (app/web.py's WebApp), which the UI only calls: the UI imports
    nothing from `app/`. Every default on the page comes from the one settings object, as the
    CLI's and the API's do."""
    # the claim holds only when the model runs here: not with a remote backend, nor on a Space
    local = web.settings.backend == "local" and not os.environ.get("SPACE_ID")

    @gpu
    def photo_by_voice(image: str | None, audio: str | None = None, question: str = "", request: gr.Request = None):
        if not image:
            yield from failed(f"{WARNING}Take or upload a photo first.", request)
            return
        if not audio and not question.strip():
            yield from failed(f"{WARNING}Record or type a question about the photo.", request)
            return
        try:
            for shown in web.photo_by_voice(image, audio, question, web.default_options(), request.session_hash):
                yield page_text(shown)
        except Exception as err:  # the request's boundary
            yield from failed(warning(err), request)

    @gpu
    def transcribe(audio: str | None, task: str, language: str, cot: bool, request: gr.Request):
        if not audio:
            raise gr.Error("Record or upload some speech first.", print_exception=False)
        target = language if task == "Translate" else None
        understand = UNDERSTANDING.get(task)  # an audio understanding preset, or None
        transcript, translation, stopped = "", "", False
        try:
            speech = web.speech(audio, target, cot and bool(target), understand, request.session_hash)
            for transcript, translation, stopped in speech:  # noqa: B007 (the last `stopped` is read below)
                yield transcript, translation, None
        except Exception as err:  # the request's boundary
            raise refusal(err) from None
        if stopped:  # the mark goes on the box that was being written
            if translation:
                translation = f"{translation} {STOPPED}"
            else:
                transcript = f"{transcript} {STOPPED}"
        text = "\n\n".join(t for t in (transcript, translation) if t)
        yield transcript, translation, text_file(DOWNLOAD_NAMES.get(task, "transcript.txt"), text)

    def stopper(tab: str):
        """The tab's Stop: it ends the tab's answer, running or queued (`queued`)."""

        def stop_answer(request: gr.Request):
            web.stop_answer(request.session_hash, tab)

        def queued(request: gr.Request):
            web.answer_queued(request.session_hash, tab)

        return stop_answer, queued

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
            raise gr.Error("Upload or record a meeting first.", print_exception=False)
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
            raise refusal(err) from None
        return _meeting_outputs(result)

    def stop_meeting(request: gr.Request):
        web.stop_meeting(request.session_hash)

    def live_start(request: gr.Request):
        try:
            transcript = web.live_start(request.session_hash)
        except Exception as err:  # the request's boundary
            raise refusal(err) from None
        return transcript, LIVE_SUMMARY, None

    def live_chunk(chunk: str | None, request: gr.Request):
        if not chunk:
            return gr.skip()
        try:
            transcript = web.live_feed(request.session_hash, chunk)
            return gr.skip() if transcript is None else transcript
        except Exception as err:  # one bad chunk: say so, keep recording
            gr.Warning(warning(err))
            return gr.skip()

    def live_close(request: gr.Request):
        web.live_close(request.session_hash)

    @gpu
    def live_stop(preset: str, instruction: str, length: float | None, unit: str, request: gr.Request):
        try:
            result = web.live_finish(request.session_hash, instruction, preset, int(length) if length else None, unit)
        except Exception as err:  # the request's boundary
            raise refusal(err) from None
        return _meeting_outputs(result)

    with gr.Blocks(title="Phi-4-multimodal") as demo:
        intro = INTRO.format(local=LOCAL if local else "")
        gr.Markdown(intro + (SIGN_OUT if web.settings.api_key else ""), elem_classes="phi-header")
        with gr.Tab("Chat"):
            chat_tab(web)
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
                    with gr.Row():
                        ask = gr.Button("Ask about the photo", variant="primary")
                        stop_photo = gr.Button("Stop", variant="stop", elem_id="photo-stop")
                    read_aloud = gr.Checkbox(
                        False, label="Read the answer aloud (your browser's own voice)", elem_id="read-aloud"
                    )
            answer = gr.Markdown(label="Answer", elem_id="photo-answer")
            stop_answer, queued = stopper("photo")
            asked = ask.click(queued, None, None).then(
                photo_by_voice, [photo, voice, typed], answer, api_name="photo_by_voice"
            )
            asked.then(None, [read_aloud, answer], None, js=READ_ALOUD_JS, queue=False)
            stop_photo.click(stop_answer, None, None)
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
                    with gr.Row():
                        run = gr.Button("Run", variant="primary")
                        stop_speech = gr.Button("Stop", variant="stop", elem_id="speech-stop")
                with gr.Column():
                    transcript = gr.Textbox(label="Transcript", lines=8, buttons=["copy"], elem_id="speech-transcript")
                    translation = gr.Textbox(
                        label="Translation", lines=8, buttons=["copy"], visible=False, elem_id="speech-translation"
                    )
                    # only a translation has a second box; an understanding task answers in the first, relabelled
                    task.change(
                        lambda chosen: (
                            [gr.update(visible=chosen == "Translate")] * 2
                            + [
                                gr.update(label="Answer" if chosen in UNDERSTANDING else "Transcript"),
                                gr.update(visible=chosen == "Translate"),
                            ]
                        ),
                        task,
                        [language, cot, transcript, translation],
                        queue=False,
                    )
                    download = gr.File(label="Download .txt")
            stop_answer, queued = stopper("speech")
            run.click(queued, None, None).then(
                transcribe, [speech, task, language, cot], [transcript, translation, download], api_name="transcribe"
            )
            stop_speech.click(stop_answer, None, None)
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
                    # the buttons before the options, which have defaults: at 1280 x 800 they stay in view
                    with gr.Row():
                        go = gr.Button("Summarise", variant="primary")
                        stop = gr.Button("Stop, keep what is done", variant="secondary")
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
                show_progress_on=[summary],  # one progress overlay, not one on each output
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
            fn.concurrency_id, fn.concurrency_limit = MODEL_GROUP, web.settings.inflight()
        if fn.api_name not in PUBLIC_EVENTS:
            fn.api_visibility = "private"
    return demo
