"""Any number of audio clips of any length in one prompt: the conformer encodes each clip alone.

transformers 5.23's audio encoder (`Phi4MultimodalAudioModel.forward`) cuts a clip longer than
500 encoder frames (8 x 10 ms each: 40 s) into 500-frame windows with `unfold_tensor`, whose
final `.view` only works for a batch of one. Two clips in one prompt are one padded batch, so a
2 s and a 60 s voice note fail with "view size is not compatible with input tensor's size and
stride", and so does transformers' own `generate` (tests/engine/test_audio_clips.py). Each clip
alone is the path transformers does run for one clip, and it gives every clip exactly the
embedding it has alone: its padding in a batch cannot reach it through the convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalAudioModel


class EachClipAloneAudioModel(Phi4MultimodalAudioModel):
    """The released encoder, fed one clip (cut to its own frames) at a time; the outputs are
    padded back into one batch, so the rest of the model sees the shapes it expects."""

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None, **kwargs):
        if hidden_states.shape[0] == 1 or mask is None:  # the processor gives a mask for 2+ clips
            return super().forward(hidden_states, mask, **kwargs)
        alone = super().forward
        frames = mask.sum(dim=1).tolist()
        encoded = [alone(hidden_states[i : i + 1, :n], None, **kwargs) for i, n in enumerate(frames)]
        longest = max(clip.shape[1] for clip in encoded)
        return torch.cat([F.pad(clip, (0, 0, 0, longest - clip.shape[1])) for clip in encoded])


def encode_each_clip_alone(model) -> None:
    """Swap the loaded model's audio encoder to the one-clip-at-a-time forward (weights untouched)."""
    encoder = model.model.embed_tokens_extend.audio_embed.encoder
    if not isinstance(encoder, Phi4MultimodalAudioModel):
        raise TypeError(f"expected Phi-4-multimodal's audio encoder, found {type(encoder).__name__}")
    encoder.__class__ = EachClipAloneAudioModel
