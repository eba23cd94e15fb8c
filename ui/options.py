"""What the page hands the web glue and gets back: plain values, no Gradio types and no markers
hidden in strings (app/web.py fills and reads these; the tabs, ui/*_tab.py, show them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ChatOptions:
    """What the Chat tab's Settings hold; `WebApp.default_options` fills it from the settings object."""

    system_prompt: str
    max_new_tokens: int
    temperature: float
    top_p: float
    max_crops: int
    video_frames: int


@dataclass
class Shown:
    """An answer as far as it has come: its text, and once it has finished, its metrics line
    ("vision adapter · first token 120 ms · …"; empty until then), and whether Stop ended it."""

    text: str
    metrics: str = ""
    stopped: bool = False
