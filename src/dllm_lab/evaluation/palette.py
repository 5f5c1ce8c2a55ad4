"""One colour per decoder preset and per study arm, the same in every panel and every figure (matplotlib PNGs and
the plotly dashboard alike). No plotting library is imported here: colours are ``#rrggbb`` strings.

- :func:`preset_color` gives a name's colour: a fixed one for the presets of ``configs/decoder/*.yaml``, the
  arms of the RL and posterior SFT studies and the named variants of the studies' sweeps, a deterministic one
  (from a hash of the name) for any other name.
- :func:`preset_colors` gives the colours of one figure's names, the one to draw a figure with: the fixed ones
  as they are, and the hashed ones moved around the colour wheel until no two colours of the figure are hard
  to tell apart. The result depends only on the set of names, so every figure of one study (PNG or dashboard)
  agrees; a known name has its colour in every figure.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable

# Decoder presets (configs/decoder/*.yaml), in families: the semi-AR baseline blue, EOS/step-size changes
# orange-brown, adaptive rules green, entropy decoding purple-pink, Dream's orders red/olive/grey, infilling teal.
PRESET_COLORS: dict[str, str] = {
    "base": "#0b3d91",
    "semi_ar": "#1f77b4",
    "full_diffusion": "#17becf",
    "eoser": "#ff7f0e",
    "ass": "#8c564b",
    "eoser_ass": "#ffd700",
    "threshold": "#2ca02c",
    "factor": "#8db600",
    "med": "#9467bd",
    "ar_med": "#e377c2",
    "entropy": "#d62728",
    "margin": "#f28e8c",
    "origin": "#808000",
    "random": "#7f7f7f",
    "infill_early_exit": "#008080",
    "posterior": "#654522",
}

# Arms of the training studies (experiments/rl/, experiments/posterior_sft/): base models grey-black.
ARM_COLORS: dict[str, str] = {
    "rl_base": "#4d4d4d",
    "rl_countdown": "#1f77b4",
    "rl_tse": "#d62728",
    "rl_tse_acc": "#ff7f0e",
    "rl_cj_grpo": "#2ca02c",
    "rl_countdown_lora": "#17becf",  # the d1 arm's recipe candidates: its blue's neighbours
    "rl_countdown_t12": "#7f7fff",
    "psft_base": "#4d4d4d",
    "psft_posterior": "#9467bd",
    "psft_unfiltered": "#8c564b",
    "psft_gold": "#d4a017",
}

# Named settings of the studies' sweeps (``sweep.variants`` of configs/experiment/early_exit.yaml): told apart
# from the presets they are drawn with (semi_ar, med, ar_med).
VARIANT_COLORS: dict[str, str] = {
    "infill": "#00a087",
    "exit_0.05": "#4dbbd5",
    "exit_0.1": "#e64b35",
    "exit_0.3": "#b8860b",
    "exit_1.0": "#000000",
    "med_exit_0.1": "#6a3d9a",
    "ar_med_exit_0.1": "#c51b7d",
}

KNOWN_COLORS: dict[str, str] = {**PRESET_COLORS, **ARM_COLORS, **VARIANT_COLORS}

_GOLDEN_ANGLE = 137.508 / 360.0
_MIN_DISTANCE = 70.0  # RGB distance (0..441) below which two colours of one figure count as too alike


def _hex(r: float, g: float, b: float) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b)))


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def _distance(a: str, b: str) -> float:
    return sum((x - y) ** 2 for x, y in zip(_rgb(a), _rgb(b), strict=True)) ** 0.5


def _hue(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _from_hue(hue: float, lightness: float = 0.42) -> str:
    return _hex(*colorsys.hls_to_rgb(hue % 1.0, lightness, 0.7))


def preset_color(name: str) -> str:
    """``#rrggbb`` of a decoder preset or study arm: fixed for the known ones, else from a hash of ``name``."""
    name = str(name)
    return KNOWN_COLORS.get(name) or _from_hue(_hue(name))


def preset_colors(names: Iterable[str]) -> dict[str, str]:
    """``name -> #rrggbb`` for the names of one figure, in their order: the known names' fixed colours, and each
    other name's hashed colour turned by the golden angle until it is far from every colour taken so far (the
    unknown names taken in sorted order, so the mapping depends only on the set of names); darker and lighter
    shades when the wheel is full."""
    names = [str(n) for n in dict.fromkeys(names)]
    taken = {n: KNOWN_COLORS[n] for n in names if n in KNOWN_COLORS}
    for name in sorted(n for n in names if n not in KNOWN_COLORS):
        # the name's own colour, else the first of its turns (and darker / lighter shades) far from the rest,
        # else the turn farthest from its nearest neighbour
        candidates = [_from_hue(_hue(name) + k * _GOLDEN_ANGLE, (0.42, 0.28, 0.6)[(k // 12) % 3]) for k in range(36)]

        def nearest(color: str) -> float:
            return min((_distance(color, other) for other in taken.values()), default=float("inf"))

        taken[name] = next((c for c in candidates if nearest(c) >= _MIN_DISTANCE), max(candidates, key=nearest))
    return {n: taken[n] for n in names}


__all__ = ["ARM_COLORS", "KNOWN_COLORS", "PRESET_COLORS", "VARIANT_COLORS", "preset_color", "preset_colors"]
