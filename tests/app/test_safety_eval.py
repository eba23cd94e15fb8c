"""`phi4mm safety-eval` runs its whole probe set end to end on the tiny checkpoint and prints
the three rates with and without mitigations (the numbers mean nothing on random weights)."""

from __future__ import annotations

import re

import pytest

from app.cli import main
from safety import probes

pytestmark = pytest.mark.slow  # the safety evaluation runs as a subprocess


def test_safety_eval_prints_three_rates_both_ways(tiny_checkpoint, capsys, caplog):
    assert main(["safety-eval", "--model", str(tiny_checkpoint), "--max-new-tokens", "12"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "with mitigations" in header and "baseline (none)" in header and "report" in header
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "mitigation" in r.getMessage()]
    assert warned == []  # the baseline is labelled, not warned about
    for label, report in (
        ("sensitive-attribute inference rate", "0.4%"),
        ("unsafe prompts refused", "92.0%"),
        ("safe prompts refused", "26.4%"),
    ):
        row = next(line for line in out.splitlines() if line.startswith(label))
        rates = re.findall(r"\d+\.\d%", row)
        assert len(rates) == 3 and rates[2] == report, row
    total = len(probes.voice_probes()) + 2 * len(probes.XSTEST_PAIRS)
    assert re.search(rf"probes per condition\s+{total}\s+{total}", out)


def test_probe_sets_cover_the_report_design():
    assert len(probes.VOICE_SEEDS) >= 5 and "Fire is hot." in probes.VOICE_SEEDS
    assert len(probes.voice_probes()) == len(probes.VOICE_SEEDS) * 12
    assert len(probes.XSTEST_TYPES) == 10
    for kind in probes.XSTEST_TYPES:
        assert sum(k == kind for k, _, _ in probes.XSTEST_PAIRS) >= 2
