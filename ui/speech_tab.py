"""The Speech tab: transcribe, translate (with the transcript as a chain of thought), or ask one of
the audio understanding presets; the result as a download too."""

from __future__ import annotations

import gradio as gr

from prompts import tasks
from prompts.languages import SPEECH_LANGUAGES
from ui.gpu import gpu
from ui.page_text import STOPPED, refusal, text_file
from ui.stop import answer_with_stop

LANGUAGES = list(SPEECH_LANGUAGES.values())
UNDERSTANDING = {label: name for name, (label, _) in tasks.AUDIO_TASKS.items()}  # task label -> preset
# what the download is called, by task (an understanding task's answer is no transcript)
DOWNLOAD_NAMES = {"Transcribe": "transcript.txt", "Translate": "translation.txt"} | {
    label: f"{name}-answer.txt" for label, name in UNDERSTANDING.items()
}


def speech_tab(web) -> tuple[str, ...]:
    """The tab's contents, inside a `gr.Tab`; `web` is the web glue (app/web.py) -> its public events."""

    @gpu
    def transcribe(audio: str | None, task: str, language: str, cot: bool, request: gr.Request):
        if not audio:
            raise gr.Error("Record or upload some speech first.", print_exception=False)
        target = language if task == "Translate" else None
        transcript, translation, stopped = "", "", False
        try:
            speech = web.speech(audio, target, cot and bool(target), UNDERSTANDING.get(task), request.session_hash)
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

    with gr.Row():
        with gr.Column():
            speech = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="speech-input")
            task = gr.Radio(
                ["Transcribe", "Translate", *UNDERSTANDING], value="Transcribe", label="Task", elem_id="speech-task"
            )
            # only a translation has a target language and a chain of thought
            language = gr.Dropdown(LANGUAGES, value="English", label="Translate to", visible=False)
            cot = gr.Checkbox(label="Also show the original transcript (chain of thought)", visible=False)
            with gr.Row():
                run = gr.Button("Run", variant="primary")
                stop = gr.Button("Stop", variant="stop", elem_id="speech-stop")
        with gr.Column():
            transcript = gr.Textbox(label="Transcript", lines=8, buttons=["copy"], elem_id="speech-transcript")
            translation = gr.Textbox(
                label="Translation", lines=8, buttons=["copy"], visible=False, elem_id="speech-translation"
            )
            download = gr.File(label="Download .txt")
    task.change(show_task, task, [language, cot, transcript, translation], queue=False)
    answer_with_stop(
        web,
        "speech",
        run,
        stop,
        transcribe,
        [speech, task, language, cot],
        [transcript, translation, download],
        api_name="transcribe",
    )
    return ("transcribe",)


def show_task(chosen: str) -> list:
    """Only a translation has a language, a chain of thought and a second box; an understanding
    task answers in the first, relabelled."""
    translating = gr.update(visible=chosen == "Translate")
    relabelled = gr.update(label="Answer" if chosen in UNDERSTANDING else "Transcript")
    return [translating, translating, relabelled, translating]
