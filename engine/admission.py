"""Admission to the decode loop (engine/scheduler.py, a mixin of its Scheduler): who joins this
round, where each row's cache lives (engine/row_caches.py), and prefill.

Prefill does not stall decoding: prompts go in by chunks, up to `prefill_chunk` tokens a round
while rows are decoding (at least one chunk; a prompt's first holds every media placeholder, so
the encoders run with it), so a new request costs each running row about one chunk's time
between two of its tokens. A prompt the prefix cache holds whole but its last token (the same
request again) takes no prefill: it joins the rows, and their next step feeds that token. Media
decoding, the processor and every check run earlier, in the caller's thread (Engine.stream). A
prompt that crosses the long-RoPE switch goes in whole (its frequencies depend on its length).
"""

from __future__ import annotations

import torch

from engine.row import Row
from engine.row_caches import SlotRows


class Admission:
    """The scheduler's admitting part: it reads and writes the scheduler's pending, prefilling and
    decoding rows, their logits, its prefix cache and its row caches (`_slots`, `_padded`, `_own`)."""

    def _joining(self) -> list[Row]:
        """Who is admitted this round (under the lock): as many as there is room for (everyone,
        one at a time: they decode alone, interleaved)."""
        room = len(self.pending) if not self.threaded else self.max_batch - len(self.rows) - len(self.prefilling)
        joining, self.pending = self.pending[: max(room, 0)], self.pending[max(room, 0) :]
        return joining

    def _admit(self, row: Row) -> None:
        """Gives the row a home (a slot is reserved now); its prompt waits for its turn to go in."""
        if row.leaving:
            row.put(None)
            return
        row.home = self._home_for(row)
        try:
            row.home.reserve(row)
        except Exception as err:  # noqa: BLE001 - an adapter that is not loaded, say
            self._fail(row, err)
            return
        self.prefilling.append(row)

    def _prefill(self) -> None:
        """Prompt chunks, the first waiting row's first, up to `prefill_chunk` tokens a round while
        rows decode (at least one chunk; many short prompts share a round), else until a row is
        in. A finished prompt's cache moves to the row's home, and the row decodes."""
        spent, joined = 0, []  # the logits of the rows that join, put after the others' at the end
        while self.prefilling and (not self.rows or (spent < self.prefill_chunk if self.prefill_chunk else not spent)):
            row = self.prefilling[0]
            if row.leaving:
                self._unprefill(row)
                row.put(None)
                continue
            if row.prefill_cache is None:  # its turn: what rows before it left kept counts too
                row.prefill_cache = self.prefixes.start(row.prepared)
                if self._joins_fed(row, joined):
                    continue
            end = self._chunk_end(row)
            spent += end - row.prefill_cache.get_seq_length()
            try:
                with self.runner.turn([row.prepared.adapter]):
                    logits = self.runner.prefill(row.prepared, row.prefill_cache, end)
                self.prefixes.keep(row.prepared, row.prefill_cache)
                if logits is not None:
                    row.home.adopt(row, row.prefill_cache)
            except Exception as err:  # noqa: BLE001 - a failing prefill fails its request alone
                self._unprefill(row)
                self._fail(row, err)
                continue
            if logits is not None:
                self._unprefill(row)
                self.rows.append(row)
                joined.append(logits.float())
        if joined:  # one copy of the batch's logits, however many join (16 rows: 12.8 MB)
            self._logits = torch.cat(joined if self._logits is None else [self._logits.float(), *joined])

    def _joins_fed(self, row: Row, joined: list[torch.Tensor]) -> bool:
        """A prompt found kept whole but its last token joins the rows now, that token fed by the
        next step with theirs (`Row.fed`): no forward pass of its own, which under load cost more
        than a step of the batch it joins. Its first token is chosen after that step, in the same
        round (`_first_tokens`). Not past the long-RoPE switch (its own cache reads the whole prompt
        again there)."""
        prepared = row.prepared
        if row.home is self._own or row.prefill_cache.get_seq_length() != prepared.prompt_tokens - 1:
            return False
        width = self._vocab if self._logits is None else self._logits.shape[-1]
        try:  # joining a batch builds its cache anew: the likeliest place to run out of memory
            row.home.adopt(row, row.prefill_cache)
            joined.append(torch.zeros(1, width, device=self.engine.device))  # its logits: never read
        except Exception as err:  # noqa: BLE001 - it fails this request alone, as a failing prefill does
            self._unprefill(row)
            self._fail(row, err)
            return True
        self._unprefill(row)
        row.fed = int(prepared.input_ids[0, -1])
        self.rows.append(row)
        return True

    def _chunk_end(self, row: Row) -> int:
        prepared, done = row.prepared, row.prefill_cache.get_seq_length()
        if not self.prefill_chunk or row.home is self._own:
            return prepared.prompt_tokens
        return min(max(done + self.prefill_chunk, prepared.media_end), prepared.prompt_tokens)

    def _unprefill(self, row: Row) -> None:
        self.prefilling.remove(row)
        row.prefill_cache = None

    def _home_for(self, row: Row):
        static = self.engine.static
        if static is not None and (self._slots is None or self._slots.decoder is not static):
            self._slots = SlotRows(self.runner, static)  # set_decode made a new one (no rows in use)
        if static is not None and self._slots.takes(row) and (self.threaded or static.free == static.rows):
            return self._slots
        alone = not any(other.home is self._padded for other in self.rows + self.prefilling)
        if self._padded.takes(row) and (self.threaded or alone):
            return self._padded
        return self._own
