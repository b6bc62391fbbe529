"""Colour maths on 8-bit RGB tuples: conversion, blending, brightness and gradients."""

import colorsys

RGB = tuple[int, int, int]
Point = tuple[float, float]

WHITE: RGB = (255, 255, 255)


def hsv(h: float, s: float, v: float) -> RGB:
    """Convert HSV floats to an 8-bit RGB tuple."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return (round(r * 255), round(g * 255), round(b * 255))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend two colours linearly: t=0 gives a, t=1 gives b."""
    t = max(0.0, min(1.0, t))
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def lum(c: RGB) -> float:
    """Perceived brightness, 0..255."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def sat(c: RGB) -> float:
    """Saturation weighted by value, used to pick lively accent colours."""
    _, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    return s * (0.4 + v)


def modify(c: RGB, hue_shift: float, sat_mul: float, mods: list[str]) -> RGB:
    """Apply the seed's hue jitter and any mood words to one colour."""
    h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    h += hue_shift
    s *= sat_mul
    for mod in mods:
        if mod == "dark":
            v *= 0.7
        elif mod == "bright":
            v += (1 - v) * 0.3
        elif mod == "pastel":
            s *= 0.55
            v += (1 - v) * 0.35
        elif mod == "vivid":
            s += (1 - s) * 0.35
            v += (1 - v) * 0.1
    return hsv(h, s, v)


def vivid(c: RGB, hue_shift: float) -> RGB:
    """Return a saturated, bright variant of a colour (optionally hue-rotated)."""
    h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    return hsv(h + hue_shift, max(s, 0.5), max(v, 0.85))


def ramp(stops: list[RGB], t: float) -> RGB:
    """Colour at position t (0..1) of a multi-stop gradient."""
    if len(stops) == 1:
        return stops[0]
    t = max(0.0, min(1.0, t)) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    return mix(stops[i], stops[i + 1], t - i)
