"""Every adapter's LoRA weights side by side, one matrix per layer for A and one for B, so a batch
whose rows want different adapters takes two small matrix products per layer whatever the mix
(it took two per adapter). Each adapter's own weights become views into the stacked ones: PEFT's
single-adapter path reads the same memory, and nothing is copied or kept twice.

Row i's update is B[:, its ranks] @ A[its ranks] x, scaled: between the two products each rank is
multiplied by its adapter's scaling where the row wants that adapter and by 0 elsewhere (a base
row's are all 0); layers whose ranks and scalings are alike share that (rows, ranks) factor, made
once per pass, and the second product adds itself to the output in place. Those zeros
add nothing to the sums, so a row gets the sum its own adapter alone gives (the fidelity tests
compare tokens with lone requests on PEFT's path).

Why it matters on a CPU: with two threads, each small matrix product there cost tens of µs of
threading overhead inside a step (tiny checkpoint, 4 rows: a mixed step 8.5 ms against 5.2 for
the base model alone; with MKL on one thread the LoRA cost nearly vanished, but the 200,064-wide
output head then ran slower): fewer products is the overhead that can go.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional


@dataclass(frozen=True)
class StackedLora:
    a: torch.Tensor  # (ranks, in): every adapter's A, in the router's adapter order
    b: torch.Tensor  # (out, ranks): every adapter's B, side by side
    owner: torch.Tensor  # (ranks,): the index of the adapter each rank belongs to
    rank_scales: torch.Tensor  # (ranks,): its adapter's scaling (lora_alpha / r) in this layer, per rank
    layout: tuple  # the ranks and scalings as numbers: layers alike share one `row_scales`

    def row_scales(self, row_weights: torch.Tensor) -> torch.Tensor:
        """(rows, 1, ranks): what row i multiplies each rank by under row_weights[i] ((rows,
        adapters): one-hot, or zeros for the base model): its own adapter's scaling, 0 elsewhere."""
        return (row_weights[:, self.owner] * self.rank_scales)[:, None, :]

    def add_update(self, x: torch.Tensor, output: torch.Tensor, row_scales: torch.Tensor) -> torch.Tensor:
        """output (rows, tokens, out) + each row's update, in place: B (A x * row_scales[i])."""
        ranks = functional.linear(x.to(self.a.dtype), self.a).mul_(row_scales)
        if output.dtype != self.b.dtype or not output.is_contiguous():
            return output + functional.linear(ranks, self.b).to(output.dtype)
        flat = output.view(-1, output.shape[-1])  # the second product and the sum in one op
        flat.addmm_(ranks.view(-1, ranks.shape[-1]), self.b.t())
        return output


def stack(module, adapters: tuple[str, ...]) -> StackedLora | None:
    """The module's adapters stacked, their weights re-pointed into the stack; None where they
    cannot share one (a LoRA bias, mixed dtypes or devices: the router then adds them one by one)."""
    a_weights = [module.lora_A[name].weight for name in adapters]
    b_layers = [module.lora_B[name] for name in adapters]
    if len(adapters) < 2 or any(layer.bias is not None for layer in b_layers):
        return None
    if len({(w.dtype, w.device) for w in a_weights + [layer.weight for layer in b_layers]}) > 1:
        return None
    with torch.no_grad():
        a = torch.cat([w.detach() for w in a_weights])
        b = torch.cat([layer.weight.detach() for layer in b_layers], dim=1)
    start = 0
    for weight, layer in zip(a_weights, b_layers):
        rank = weight.shape[0]
        weight.data = a[start : start + rank]
        layer.weight.data = b[:, start : start + rank]
        start += rank
    ranks = [w.shape[0] for w in a_weights]
    scales = [float(module.scaling[name]) for name in adapters]
    owner = torch.repeat_interleave(torch.arange(len(adapters), device=a.device), torch.tensor(ranks, device=a.device))
    return StackedLora(a, b, owner, a.new_tensor(scales)[owner], (tuple(ranks), tuple(scales)))
