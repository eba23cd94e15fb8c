"""The model's log-mel features, computed about 8x faster than transformers' extractor.

transformers' `Phi4MultimodalFeatureExtractor` builds a float64 window, which promotes the whole
STFT of a recording to float64 and materialises every frame at once (3.5 s for 30 minutes on
2 cores). The same math in float32, a minute of frames at a time, takes 0.4 s and differs by
under 1e-2 on log values around 20 (mean difference 1e-6). Each clip of a batch is computed
alone over its own samples, so a clip's features do not depend on the clips beside it; frames
past its end are 0 (log 1), which the encoder never reads (engine/audio_clips.py).
"""

from __future__ import annotations

import torch
from transformers import Phi4MultimodalFeatureExtractor

FRAMES_PER_CHUNK = 6000  # 60 s of 10 ms frames: small enough to stay in cache, large enough to vectorise


class FastLogMelExtractor(Phi4MultimodalFeatureExtractor):
    def _torch_extract_fbank_features(self, waveform, audio_lengths, device="cpu"):
        clips = [self._one_clip(row[: int(n)], device) for row, n in zip(waveform, audio_lengths)]
        longest = max(clip.shape[0] for clip in clips)
        return torch.stack([torch.nn.functional.pad(clip, (0, 0, 0, longest - clip.shape[0])) for clip in clips])

    def _one_clip(self, waveform, device):
        """(frames, mel bins) of one clip's samples."""
        window = torch.hamming_window(self.win_length, periodic=False, dtype=torch.float32, device=device) * 32768
        mel = torch.from_numpy(self.mel_filters).to(device, torch.float32)
        waveform = waveform.to(device, torch.float32)
        n_frames = (waveform.shape[-1] - self.win_length) // self.hop_length + 1
        chunks = []
        for start in range(0, n_frames, FRAMES_PER_CHUNK):
            stop = min(n_frames, start + FRAMES_PER_CHUNK)
            piece = waveform[..., start * self.hop_length : (stop - 1) * self.hop_length + self.win_length]
            frames = piece.unfold(-1, self.win_length, self.hop_length)
            # pre-emphasis within each frame; the first sample's predecessor is itself (as the reference)
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            spectrum = torch.fft.rfft((frames - self.preemphasis * previous) * window, n=self.n_fft, dim=-1)
            power = spectrum.real.square() + spectrum.imag.square()
            chunks.append(torch.log(torch.clamp(power @ mel, min=1.0)))
        return torch.cat(chunks, dim=-2)


def install_fast_features(processor) -> None:
    """Swap the processor's audio extractor for the fast one, keeping its configuration."""
    processor.audio_processor = FastLogMelExtractor(**processor.audio_processor.to_dict())
