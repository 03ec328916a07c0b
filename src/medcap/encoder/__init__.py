"""CLIP encoders from a spec string, for inference (fine-tuning is the program `medcap.train`)."""

from __future__ import annotations

from medcap.encoder.encoder import Encoder, load_encoder
from medcap.encoder.spec import EncoderSpec, parse_spec

__all__ = ["Encoder", "EncoderSpec", "load_encoder", "parse_spec"]
