"""dllm-lab: a Lightning + Hydra + MLflow research template for masked diffusion language models.

Layers, from the bottom up (README, "Layout"): ``errors``/``paths`` -> ``tasks``/``tracking`` -> ``models``
-> ``decoding`` -> ``temporal``/``data`` -> ``rl`` -> ``training`` -> ``evaluation`` -> ``factory`` -> ``runs``
-> ``cli``. The methods are documented in docs/methods.md.
"""
