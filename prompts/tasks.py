"""Task prompts the model was trained with (report, model card), and helpers around them.
No fixed summarisation prompt is published: the instruction is the user's, shaped here."""

from __future__ import annotations

from dataclasses import dataclass

from prompts.languages import resolve_language

ASR = "Transcribe the audio clip into text."
SPOKEN_QUERY = ""  # spoken-query QA: the audio alone, with an empty text prompt
SEPARATOR = "<sep>"
AUDIO_SOUNDS = "Describe the sounds in this audio clip."
# Ours, not from the model card (it gives no language-identification prompt); the answer is held
# to the eight names by a grammar (app/transcription.py).
LANGUAGE_ID = "Which language is spoken in this audio clip? Answer with the language's name only."
AUDIO_MUSIC = "Describe the music in this audio clip: genre, instruments, tempo and mood."
VIDEO_DESCRIPTION = "Describe what happens in this video."
# Audio understanding beside transcription and translation: the task's name in the UI, the CLI
# (`phi4mm ask --audio F --task NAME`) and its prompt.
AUDIO_TASKS = {
    "sounds": ("Describe the sounds", AUDIO_SOUNDS),
    "music": ("Describe the music", AUDIO_MUSIC),
    "question": ("Answer the spoken question", SPOKEN_QUERY),
}
DEFAULT_SUMMARY_INSTRUCTION = "Summarize the audio."

SUMMARY_FORMATS = {
    "bullets": "Write the summary as bullet points, one per line, each starting with '- '.",
    "json": (
        'Answer with JSON only, no other text, in the form {"title": "...", "summary": "...", '
        '"key_points": ["..."], "action_items": ["..."]}.'
    ),
    "email": "Write the summary as a short email to the participants, starting with a 'Subject:' line.",
    "paragraph": "Write the summary as one paragraph.",
}
LENGTH_UNITS = ("words", "sentences")


def translate(language: str) -> str:
    return f"Translate the audio to {resolve_language(language)}."


def transcribe_and_translate(language: str) -> str:
    """Chain of thought: the transcript first, then the translation, split by <sep>."""
    return (
        f"Transcribe the audio to text, and then translate the audio to {resolve_language(language)}. "
        f"Use {SEPARATOR} as a separator between the original transcript and the translation."
    )


@dataclass(frozen=True)
class TranscriptAndTranslation:
    transcript: str
    translation: str | None  # None when the model gave no separator


# Shown where a chain-of-thought answer carried no separate translation (CLI and Speech tab).
NO_TRANSLATION = "(the model gave no separate translation)"


def split_transcript_translation(answer: str) -> TranscriptAndTranslation:
    """Split a chain-of-thought answer. Missing separator: the whole answer is the transcript.
    Repeated separators: the first piece is the transcript and nothing after it is dropped."""
    pieces = [piece.strip() for piece in answer.split(SEPARATOR)]
    pieces = [piece for piece in pieces if piece]
    if SEPARATOR not in answer or len(pieces) < 2:
        return TranscriptAndTranslation(pieces[0] if pieces else "", None)
    return TranscriptAndTranslation(pieces[0], "\n".join(pieces[1:]))


def summary(
    instruction: str | None = None, fmt: str = "bullets", length: int | None = None, unit: str = "words"
) -> str:
    """The user's instruction (or a plain default), the output format, then an optional length."""
    if fmt not in SUMMARY_FORMATS:
        raise ValueError(f"Unknown summary format {fmt!r}; choose one of {', '.join(SUMMARY_FORMATS)}.")
    if unit not in LENGTH_UNITS:
        raise ValueError(f"Length is counted in {' or '.join(LENGTH_UNITS)}, not {unit!r}.")
    parts = [(instruction or DEFAULT_SUMMARY_INSTRUCTION).strip(), SUMMARY_FORMATS[fmt]]
    if length is not None:
        if length < 1:
            raise ValueError("A summary length must be at least 1.")
        parts.append(f"Use at most {length} {unit if length != 1 else unit[:-1]}.")
    return " ".join(parts)


def video_frames_note(timestamps: list[float], duration: float, sound: str = "none") -> str:
    """Tells the model where the frames it sees sit in time, and what it hears: `sound` is "none"
    (the video has no sound), "heard" (its soundtrack is the audio just before) or "left out"
    (it has sound the model is not given, so it should not pretend to have heard it). Ours."""
    stamps = ", ".join(f"{t:.1f}" for t in timestamps)
    note = f"These {len(timestamps)} frames are from a {duration:.1f}-second video, taken at {stamps} seconds."
    if sound == "heard":
        note += " The audio is the video's soundtrack."
    elif sound == "left out":
        note += " The video's sound is not included."
    return note


def asr_with_vocabulary(words: str) -> str:
    """The ASR prompt with a caller's hint of names and terms (Whisper's `prompt`). Ours, not from
    the model card: the official prompt is kept word for word, the hint follows it."""
    return f"{ASR} Names and terms it may contain: {words.strip()}"


def transcript_token_budget(seconds: float) -> int:
    """Answer room for a transcript: fast speech is about 4 words (6 tokens) a second."""
    return max(64, int(seconds * 6) + 32)


def clock(seconds: float) -> str:
    """00:01:05 style."""
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def partial_summary(transcript: str, part: int, parts: int, start: float, end: float) -> str:
    """Map step of long-meeting summarisation: one stretch of the transcript."""
    return (
        f"This is part {part} of {parts} of a meeting transcript, from {clock(start)} to {clock(end)}:\n\n"
        f"{transcript}\n\n"
        "Summarise this part in a few bullet points. Keep names, numbers, decisions and action items."
    )


def timed_transcript(segments: list[tuple[float, float, str]]) -> str:
    """(start s, end s, text) segments -> one line each, "[00:00:10 - 00:00:21] text"."""
    return "\n".join(f"[{clock(start)} - {clock(end)}] {text}" for start, end, text in segments)


def transcript_summary(
    transcript: str, instruction: str | None, fmt: str, length: int | None, unit: str = "words"
) -> str:
    """A meeting summarised from its transcript (live captions: the audio is not kept). Ours."""
    return (
        f"Below is the transcript of a meeting, with timestamps.\n\n{transcript or '(nothing was said)'}\n\n"
        "Using it: " + summary(instruction, fmt, length, unit)
    )


def combine_summaries(
    partials: list[str], instruction: str | None, fmt: str, length: int | None, unit: str = "words"
) -> str:
    """Reduce step: the partial summaries, in order, under the user's own instruction and format."""
    joined = "\n\n".join(f"Part {i}:\n{text.strip()}" for i, text in enumerate(partials, 1))
    return (
        f"Below are summaries of consecutive parts of one meeting, in order.\n\n{joined}\n\n"
        "Using them as the whole meeting: " + summary(instruction, fmt, length, unit)
    )


def json_only(previous: str) -> str:
    """Re-ask once when a JSON summary did not parse."""
    return (
        "Rewrite the following as valid JSON only, no other text, in the form "
        '{"title": "...", "summary": "...", "key_points": ["..."], "action_items": ["..."]}:\n\n' + previous
    )
