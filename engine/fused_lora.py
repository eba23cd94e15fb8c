"""Every adapter's LoRA weights side by side, one matrix per layer for A and one for B, so a batch
whose rows want different adapters takes two small matrix products per layer whatever the mix
(it took two per adapter). Each adapter's own weights become views into the stacked ones: PEFT's
single-adapter path reads the same memory, and nothing is copied or kept twice.

Row i's update is B[:, its ranks] @ A[its ranks] x, scaled: the other adapters' ranks are zeroed
between the two products (a 0/1 mask over the ranks), and a base row's scale is 0. Those zeros
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
    scales: torch.Tensor  # (adapters,): each adapter's scaling (lora_alpha / r) in this layer

    def add_update(self, x: torch.Tensor, output: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
        """output + row i's update under row_weights[i] ((rows, adapters): one-hot, or zeros for
        the base model): its own adapter's ranks kept, the others zeroed, times its scaling."""
        rank_mask = row_weights[:, self.owner][:, None, :]
        row_scale = (row_weights @ self.scales)[:, None, None]
        ranks = functional.linear(x.to(self.a.dtype), self.a) * rank_mask
        return torch.addcmul(output, functional.linear(ranks, self.b).to(output.dtype), row_scale)


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
    ranks = torch.tensor([w.shape[0] for w in a_weights], device=a.device)
    owner = torch.repeat_interleave(torch.arange(len(adapters), device=a.device), ranks)
    return StackedLora(a, b, owner, a.new_tensor([module.scaling[name] for name in adapters]))
