"""Training programs on top of the library: contrastive fine-tuning of the encoder
(`medcap train`) and LoRA fine-tuning of a generator (`medcap train generator`).

Like open_clip_train beside open_clip: these modules import the library, never the reverse.
"""
