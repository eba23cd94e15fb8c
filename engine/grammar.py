"""Constrained decoding: at every step a token mask that lets through only what can still
complete a grammar, from llguidance (the library vLLM and sglang also use). A grammar is a JSON
schema (`response_format`) or a Lark grammar whose pieces may be JSON schemas (a forced tool
call). When the grammar is complete the mask allows only the end-of-text token, so the answer
ends there.

The mask is a logits processor in the request's own Sampler (engine/sampling.py): each row of a
batch keeps its own matcher, and the static and compiled paths choose through the same Sampler.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass

import torch

from core.errors import InvalidRequest
from engine.finite_schema import endless_problem
from engine.schema_relax import relaxed


def _llguidance():
    import llguidance
    import llguidance.hf
    import llguidance.torch

    return llguidance


@dataclass(frozen=True)
class GrammarSpec:
    """What a request's answer must match: `kind` "json_schema" (source: the schema as JSON
    text) or "lark" (source: the grammar; `%json {…}` embeds a schema)."""

    kind: str
    source: str

    @classmethod
    def json_schema(cls, schema: dict) -> "GrammarSpec":
        # one space after separators and no free-form whitespace: random or unsure models
        # otherwise fill strings of newlines between tokens; keywords llguidance refuses relaxed
        return cls("json_schema", json.dumps({**relaxed(schema), "x-guidance": {"whitespace_flexible": False}}))

    @classmethod
    def lark(cls, grammar: str) -> "GrammarSpec":
        return cls("lark", grammar)

    def compiled(self, param: str = "response_format") -> str:
        """The grammar in llguidance's own form; a bad schema or grammar is the request's fault
        (`param`: the field that brought it). Compiled once per distinct grammar: the request's
        check before admission and its matcher share the work."""
        grammar, problem = _compile(self.kind, self.source)
        if problem:
            raise InvalidRequest(f"The schema cannot be used for constrained decoding: {problem}", param=param)
        return grammar


@functools.lru_cache(maxsize=64)
def _compile(kind: str, source: str) -> tuple[str, str]:
    """(llguidance grammar, the reason it cannot be used or ""). A grammar llguidance accepts
    may still have no end (engine/finite_schema.py): refused here, before any request decodes."""
    matcher = _llguidance().LLMatcher
    try:
        grammar = (
            matcher.grammar_from_json_schema(source) if kind == "json_schema" else matcher.grammar_from_lark(source)
        )
        problem = matcher.validate_grammar(grammar)
    except (ValueError, TypeError) as err:
        return "", str(err)
    return grammar, problem or _endless(kind, source)


def _endless(kind: str, source: str) -> str:
    """Why a grammar's JSON schema (a Lark grammar's `%json` pieces) can never be completed, or ""."""
    schemas = [json.loads(source)] if kind == "json_schema" else list(_embedded_schemas(source))
    return next((problem for problem in map(endless_problem, schemas) if problem), "")


def _embedded_schemas(lark: str):
    """The JSON schemas a Lark grammar embeds as `%json {…}` (how a forced tool call carries the
    tools' parameters: app/tool_calls.py)."""
    decoder, start = json.JSONDecoder(), 0
    while (at := lark.find("%json", start)) >= 0:
        start = at + len("%json")
        try:
            schema, start = decoder.raw_decode(lark, len(lark) - len(lark[start:].lstrip()))
        except ValueError:
            continue  # llguidance parsed it, so this is not a schema of ours: no verdict
        yield schema


class GrammarTokenizer:
    """llguidance's view of the tokenizer, built once per engine on first use (about 1.6 s for
    the 200,064-token vocabulary on this CPU), and shared by every request."""

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self._built = None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._built is None:
                self._built = _llguidance().hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size)
            return self._built


class GrammarConstraint:
    """A logits processor: feeds the matcher the tokens chosen since its last call, then masks
    every token the grammar does not allow next."""

    def __init__(self, tokenizer: GrammarTokenizer, spec: GrammarSpec, prompt_tokens: int):
        ll = _llguidance()
        info = tokenizer.get()
        self.matcher = ll.LLMatcher(info, spec.compiled())
        self.mask = ll.torch.allocate_token_bitmask(1, info.vocab_size)
        self.seen = prompt_tokens  # ids before this are the prompt

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ll = _llguidance()
        for token in ids[0, self.seen :].tolist():
            if not self.matcher.consume_token(token):  # never happens for tokens this mask allowed
                raise RuntimeError(f"the grammar refused token {token}: {self.matcher.get_error()}")
        self.seen = ids.shape[1]
        ll.torch.fill_next_token_bitmask(self.matcher, self.mask, 0)
        apply_bitmask(scores, self.mask.to(scores.device))
        return scores


_BITS = torch.arange(32, dtype=torch.int32)


def apply_bitmask(scores: torch.Tensor, mask: torch.Tensor) -> None:
    """llguidance's `apply_token_bitmask_inplace`, eager: a token whose bit is 0 gets -inf (bit i
    of word w is token 32 w + i; tokens past the mask's words are refused too). llguidance's own
    wraps its kernel in `torch.compile`, and the first constrained answer of every process then
    waited ~10 s on a CPU for the compile (0.015 s a call after it)."""
    words = mask.shape[1]
    if scores.shape[1] > 32 * words:
        scores[:, 32 * words :] = float("-inf")
    allowed = ((mask[:, :, None] >> _BITS.to(mask.device)) & 1).reshape(mask.shape[0], 32 * words)
    scores[:, : 32 * words].masked_fill_(allowed[:, : scores.shape[1]] == 0, float("-inf"))
