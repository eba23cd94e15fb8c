"""`phi4mm safety-eval`: the repo's probe sets through the conversation service, with and
without mitigations, judged by `safety.judge`.

"With" is the product as shipped: system mitigations and the output guard. "Without" turns
both off (no system message, no guard), as the report's unmitigated baseline.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import Phi4mmError
from engine.request import SamplingParams
from media.audio import load_audio
from media.parts import Message, TextPart
from safety import judge, probes
from safety.mitigations import MITIGATIONS, MitigationPolicy
from safety.output_guard import GuardPolicy

# The report's figures for Phi-4-multimodal, to compare with.
REPORT = {"isa": 0.004, "unsafe_refused": 0.92, "safe_refused": 0.264}


@dataclass
class Rates:
    isa: float  # voice probes whose answer infers the asked attribute
    unsafe_refused: float
    safe_refused: float
    probes: int


def synthesise(sentences, folder: Path) -> dict:
    """espeak-ng speech for each seed sentence, decoded like any user audio."""
    if shutil.which("espeak-ng") is None:
        raise Phi4mmError("safety-eval speaks its voice probes with espeak-ng: install it (apt-get install espeak-ng).")
    audio = {}
    for i, sentence in enumerate(sentences):
        path = folder / f"seed{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True, capture_output=True, timeout=60)
        audio[sentence] = load_audio(path)
    return audio


def run_condition(service, voice, text_pairs, audio, max_new_tokens: int) -> Rates:
    params = SamplingParams(max_new_tokens=max_new_tokens)
    inferred = sum(
        judge.infers_attribute(
            service.answer([Message("user", [audio[seed], TextPart(question)])], params)[0], attribute
        )
        for seed, attribute, question in voice
    )
    refused = {"safe": 0, "unsafe": 0}
    for _, safe, unsafe in text_pairs:
        for kind, prompt in (("safe", safe), ("unsafe", unsafe)):
            refused[kind] += judge.is_refusal(service.answer([Message("user", [TextPart(prompt)])], params)[0])
    pairs = max(1, len(text_pairs))
    return Rates(
        inferred / max(1, len(voice)),
        refused["unsafe"] / pairs,
        refused["safe"] / pairs,
        len(voice) + 2 * len(text_pairs),
    )


def evaluate(engine, limit: int | None = None, max_new_tokens: int = 64, seed: int = 0) -> dict[str, Rates]:
    from app.service import ConversationService

    voice, pairs = probes.voice_probes(), list(probes.XSTEST_PAIRS)
    if limit:  # a reproducible sample, for quick runs
        rng = random.Random(seed)
        voice, pairs = rng.sample(voice, min(limit, len(voice))), rng.sample(pairs, min(limit, len(pairs)))
    with tempfile.TemporaryDirectory() as tmp:
        audio = synthesise(sorted({s for s, _, _ in voice}), Path(tmp))
    conditions = {
        "with mitigations": ConversationService(engine),
        "baseline (none)": ConversationService(
            engine, MitigationPolicy(disabled=frozenset(MITIGATIONS), baseline=True), guard=GuardPolicy(categories={})
        ),
    }
    return {name: run_condition(service, voice, pairs, audio, max_new_tokens) for name, service in conditions.items()}


def format_report(results: dict[str, Rates]) -> str:
    names = list(results)
    rows = [
        ("sensitive-attribute inference rate", "isa"),
        ("unsafe prompts refused", "unsafe_refused"),
        ("safe prompts refused", "safe_refused"),
    ]
    lines = [f"{'':38}" + "".join(f"{n:>18}" for n in names) + f"{'report (Phi-4-mm)':>20}"]
    for label, key in rows:
        lines.append(
            f"{label:<38}" + "".join(f"{getattr(results[n], key):>17.1%} " for n in names) + f"{REPORT[key]:>19.1%}"
        )
    lines.append(f"{'probes per condition':<38}" + "".join(f"{results[n].probes:>18}" for n in names))
    lines.append("judge: rule-based (safety/judge.py); report ISA is with its system message.")
    return "\n".join(lines)
