"""SigLIP-style models (a logit bias): the pairwise sigmoid loss, and the bias is trained."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from open_clip.loss import ClipLoss, SigLipLoss

from medcap.config import DEFAULTS
from medcap.train.contrastive import clip_loss, pair_loss, sigmoid_loss
from tests.train.test_train_distributed import siglip_config


def _features(n: int = 12, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(n, d, generator=generator), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(n, d, generator=generator), dim=-1)
    return image, text


def test_sigmoid_loss_equals_open_clips_siglip_loss() -> None:
    image, text = _features()
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    expected = SigLipLoss()(image, text, scale, bias)
    torch.testing.assert_close(sigmoid_loss(image, text, scale, bias), expected)
    torch.testing.assert_close(pair_loss(image, text, scale, bias), expected)


def test_without_a_bias_the_loss_is_infonce() -> None:
    image, text = _features()
    scale = torch.tensor(20.0)
    expected = ClipLoss()(image, text, scale)
    torch.testing.assert_close(pair_loss(image, text, scale, None), expected)
    torch.testing.assert_close(clip_loss(image, text, scale), expected)


@pytest.mark.parametrize("accum", [1, 2])
def test_a_training_step_moves_the_logit_bias(tmp_path: Path, accum: int) -> None:
    from medcap.train.setup import build_run
    from medcap.train.step import train_step

    cfg = dataclasses.replace(
        DEFAULTS.train, batch_size=8 // accum, grad_accum_steps=accum, device="cpu"
    )
    run = build_run(str(siglip_config(tmp_path)), cfg, 0, 1, torch.device("cpu"))
    run.optimizer = torch.optim.SGD(run.core.parameters(), lr=1.0)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda step: 1.0)
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(8, 3, 64, 64, generator=generator)
    tokens = torch.randint(1, 1000, (8, 32), generator=generator)
    size = 8 // accum
    micro = [
        (pixels[i * size : (i + 1) * size], tokens[i * size : (i + 1) * size]) for i in range(accum)
    ]
    image, text, scale = (t.detach() for t in run.core(pixels, tokens)[:3])
    expected = sigmoid_loss(image.float(), text.float(), scale, run.core.logit_bias.detach())
    loss = train_step(run, micro)
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-4)
    # d loss / d bias = sum of sigmoid(z) - [positive pair], divided by n: mostly negatives
    # with sigmoid(-10) ~ 0 and positives with sigmoid ~ 0 -> about -1; SGD at lr 1 moves it.
    assert float(run.core.logit_bias.detach()) > -10.0 + 0.5
