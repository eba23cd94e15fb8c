"""The model's output head (hidden -> 200,064 logits) where PyTorch's matmul takes a slow road.

Two shapes, both measured on this 2-core CPU (bench/RESULTS.md):
- a prefill's last position comes as a view with the whole prompt's strides (`_standard_strides`);
- a decode batch, (rows, 1, hidden): `F.linear` runs a general matrix product that costs about as
  much per row as a row alone (tiny checkpoint, fp32: 8.8 ms for 4 rows, 17.7 for 16, against 1.6
  for one), while the same product taken as weight @ rows^T costs 2.5 and 8.3 ms
  (`columns_for_batches`). Installed on a CPU in fp32 only: a GPU's kernels are another story
  (not measured), and in bf16 at full size the two forms are within 15 % of each other either way.
  Inside `writing_into(block)` that product writes into `block`'s memory, kept from step to step.
"""

from __future__ import annotations

import threading
import types
from contextlib import contextmanager

import torch
from torch.nn import functional


def _standard_strides(module, args):
    """transformers hands the output head the prompt's last position as a view with the whole
    prompt's strides; PyTorch's matmul cannot fold such a tensor into a matrix, so it runs a batched
    product, which in bf16 on a CPU first copies the whole transposed head (200,064 x 3,072): 3.2 s
    of every prefill on this CPU at full size. The same rows with standard strides take 0.04 s
    (bench/RESULTS.md); what the batched product costs on a GPU is not measured. `generate` gets
    this too: it runs the same model."""
    hidden = args[0]
    return (hidden.reshape(-1, hidden.shape[-1]).view(hidden.shape), *args[1:])


def hold_standard_strides(head: torch.nn.Module):
    """Installs `_standard_strides` on the model's output head, once per head -> its handle."""
    handle = getattr(head, "phi4mm_strides_hook", None)
    if handle is None:
        handle = head.phi4mm_strides_hook = head.register_forward_pre_hook(_standard_strides)
    return handle


class LogitsBlock:
    """Memory a decode batch's logits are written into, step after step, grown to the largest
    batch: at 16 rows they are 12.8 MB (fp32), and under the server's malloc setting
    (app/launch.py: blocks over 4 MiB are mapped afresh and given back when freed) a new tensor
    each step faulted in every page anew: the tiny checkpoint's head for 16 rows took 14.2 ms
    against 9.7 (this 2-core CPU, one thread)."""

    def __init__(self):
        self.flat: torch.Tensor | None = None

    def take(self, shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """A contiguous (shape) tensor on this block's memory (its earlier contents are gone)."""
        size = shape[0] * shape[1]
        flat = self.flat
        if flat is None or flat.numel() < size or flat.dtype != like.dtype or flat.device != like.device:
            self.flat = flat = like.new_empty(size)
        return flat[:size].view(shape)


_block = threading.local()  # the LogitsBlock the head writes into, in this thread (`writing_into`)


@contextmanager
def writing_into(block: LogitsBlock):
    """Inside, a decode batch's logits are a view of `block`: valid until its next batch writes."""
    _block.current = block
    try:
        yield
    finally:
        _block.current = None


def _rows_as_columns(self, hidden: torch.Tensor) -> torch.Tensor:
    if hidden.dim() == 3 and hidden.shape[0] > 1 and hidden.shape[1] == 1 and self.bias is None:
        rows = hidden.reshape(hidden.shape[0], hidden.shape[2])
        # a compiled step (engine/slot_decoder.py) keeps its own buffers: not even a guard on the thread's block
        block = None if torch.compiler.is_compiling() else getattr(_block, "current", None)
        if block is None:
            logits = self.weight @ rows.T
        else:
            logits = torch.mm(self.weight, rows.T, out=block.take((self.weight.shape[0], rows.shape[0]), rows))
        return logits.T.unsqueeze(1)  # (rows, 1, vocab), column-major: no copy
    return functional.linear(hidden, self.weight, self.bias)


def columns_for_batches(head: torch.nn.Linear) -> None:
    """Gives the output head `_rows_as_columns` as its forward (once; its weights stay its own)."""
    # fp32 only: in bf16 at full size (200,064 x 3,072) the two are within 15 % either way (this CPU)
    if (
        getattr(head, "phi4mm_columns", False)
        or type(head) is not torch.nn.Linear
        or head.weight.dtype != torch.float32
    ):
        return
    head.forward = types.MethodType(_rows_as_columns, head)
    head.phi4mm_columns = True
