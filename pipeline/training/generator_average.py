"""The generator's exponential moving average (``train.g_ema``).

Averaging the generator's weights over the last steps removes the step-to-step jitter
that keeps a GAN's samples off the modes (Yazici et al. 2019, "The Unusual Effectiveness
of Averaging in GAN Training"; BigGAN and StyleGAN sample from such an average).
torch's own ``AveragedModel`` with ``get_ema_multi_avg_fn`` does the averaging (one fused
``lerp`` per dtype and device); ``use_buffers=True`` averages batch norm's running
statistics as well, so the average's eval-mode forward is consistent with its weights.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def generator_average(generator: nn.Module, decay: float) -> AveragedModel | None:
    """An average of ``generator`` updated as ``avg ← decay·avg + (1 − decay)·weights`` after
    each generator step (the first update copies the weights); None when ``decay`` is 0."""
    if decay <= 0:
        return None
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
