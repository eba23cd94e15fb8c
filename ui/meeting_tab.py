"""The Meeting tab: a recording summarised, or a meeting recorded live with its transcript growing
as it is spoken and its summary at Stop; transcript, subtitles and summary as downloads."""

from __future__ import annotations

import gradio as gr

from prompts import tasks
from ui.gpu import gpu
from ui.page_text import refusal, text_file, warning

SUMMARY_PRESETS = list(tasks.SUMMARY_FORMATS)
SUMMARY = "### Summary\n*The summary appears here.*"
LIVE_SUMMARY = "### Summary\n*Recording: the summary appears here when you stop.*"


def meeting_tab(web, page: gr.Blocks) -> tuple[str, ...]:
    """The tab's contents, inside a `gr.Tab` of `page`; `web` is the web glue (app/web.py) -> its
    public events. A live meeting ends with the page, too."""

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
            instruction = gr.Textbox("", label="Instruction", placeholder="e.g. List the decisions and who owns them.")
            with gr.Row():
                # 0 (or empty) means no limit: a `minimum=1` made the default itself an error
                length = gr.Number(
                    label="Length (0 = no limit)", value=0, precision=0, minimum=0, elem_id="meeting-length"
                )
                unit = gr.Radio(["words", "sentences"], value="words", label="counted in")
        with gr.Column():
            summary = gr.Markdown(SUMMARY, label="Summary", elem_id="meeting-summary")
            transcript = gr.Textbox(label="Transcript", lines=10, elem_id="meeting-transcript")
            files = gr.File(label="Downloads", file_count="multiple", elem_id="meeting-files")
    outputs = [transcript, summary, files]
    go.click(
        summarize,
        [meeting, preset, instruction, length, unit],
        outputs,
        api_name="summarize",
        show_progress_on=[summary],  # one progress overlay, not one on each output
    )
    stop.click(stop_meeting, None, None, api_name="stop_meeting")
    live.start_recording(live_start, None, outputs)
    live.stream(live_chunk, live, transcript, stream_every=1.0, show_progress="hidden")
    live.stop_recording(live_stop, [preset, instruction, length, unit], outputs)
    page.unload(live_close)  # a closed page keeps nothing
    return ("summarize", "stop_meeting")


def _meeting_outputs(result) -> tuple[str, str, list[str]]:
    """A MeetingResult -> (transcript, summary with its notes, download files)."""
    shown = result.summary + "".join(f"\n\n> ⚠️ {note}" for note in result.notes + result.remarks)
    files = [
        text_file("transcript.txt", result.transcript_txt()),
        text_file("transcript.srt", result.transcript_srt()),
        text_file(f"summary.{result.summary_suffix}", result.summary),
    ]
    return result.transcript_txt(), shown, files
