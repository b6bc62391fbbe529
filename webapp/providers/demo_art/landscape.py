"""Ground motifs: mountains, dunes, city skylines, water and trees."""

import itertools
import math
import random

from PIL import ImageDraw

from webapp.providers.demo_art.colours import RGB, WHITE, Point, lum, mix, ramp
from webapp.providers.demo_art.plan import Plan


def _ridge(rng: random.Random, n: int, rough: float) -> list[float]:
    """Midpoint-displacement profile normalised to 0..1 (n must be a power of two)."""
    ys = [0.0] * (n + 1)
    ys[0], ys[n] = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
    step, amp = n, 1.0
    while step > 1:
        half = step // 2
        for i in range(half, n, step):
            ys[i] = (ys[i - half] + ys[i + half]) / 2 + rng.uniform(-amp, amp)
        step, amp = half, amp * rough
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    return [(y - lo) / span for y in ys]


def draw_mountains(draw: ImageDraw.ImageDraw, plan: Plan, backdrop: bool = False) -> None:
    """Layered ridges darkening towards the viewer; backdrop=True gives two pale low hills."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    water = "water" in plan.motifs
    layers = 2 if backdrop else rng.randint(3, 4)
    gentle = plan.gentle or backdrop
    haze = mix(ramp(plan.sky, 0.5), plan.sky[-1], 0.35)
    if plan.snowy:
        near = mix((70, 90, 130), plan.sky[0], 0.3)
    else:
        near = mix(plan.sky[0], (16, 14, 28), 0.5)
        if plan.foliage:
            near = mix(near, min(plan.foliage, key=lum), 0.4)
    for i in range(layers):
        f = i / (layers - 1)
        colour = mix(haze, near, (0.2 + 0.3 * f) if backdrop else (0.3 + 0.7 * f))
        if backdrop:
            top = h * (0.5 + 0.12 * f + rng.uniform(-0.05, 0.03))
            bottom, base = h * (0.75 + 0.1 * f), h + 2.0
        elif water:
            top = hy - hy * rng.uniform(0.3, 0.42) * (1 - 0.35 * f)
            bottom, base = hy - hy * 0.02 * (1 - f), hy + 1
        else:
            top = h * (0.36 + 0.2 * f + rng.uniform(-0.04, 0.04))
            bottom, base = h * (0.62 + 0.28 * f), h + 2
        # Hills get a smoother profile than rocky mountains.
        rough = rng.uniform(0.25, 0.32) if gentle else rng.uniform(0.42, 0.52)
        prof = _ridge(rng, 64, rough)
        ridge = [(w * k / 64, bottom - (bottom - top) * p) for k, p in enumerate(prof)]
        draw.polygon(
            [(-2, base), (-2, ridge[0][1]), *ridge, (w + 2, ridge[-1][1]), (w + 2, base)],
            fill=colour,
        )
        if plan.snowy and i < layers - 1:
            # Snow caps: repaint the part of the ridge above a snow line.
            snow_line = bottom - (bottom - top) * 0.7
            for cap in _runs_above(ridge, snow_line):
                draw.polygon(cap, fill=mix(WHITE, colour, 0.2))


def _runs_above(ridge: list[Point], line: float) -> list[list[Point]]:
    """Split a ridge into polygons of the parts above a horizontal line (smaller y)."""
    runs: list[list[Point]] = []
    current: list[Point] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(ridge):
        if y0 < line:
            current.append((x0, y0))
        if (y0 < line) != (y1 < line):
            # Interpolate the crossing so caps meet the snow line exactly.
            t = (line - y0) / (y1 - y0)
            current.append((x0 + (x1 - x0) * t, line))
            if y1 >= line:
                runs.append(current)
                current = []
            else:
                current = [(x0 + (x1 - x0) * t, line)]
    if ridge[-1][1] < line:
        current.append(ridge[-1])
    if len(current) >= 3:
        runs.append(current)
    return [run for run in runs if len(run) >= 3]


def draw_dunes(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Smooth sand dunes built from a few summed sine waves."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    water = "water" in plan.motifs
    sand = plan.ground or [(200, 130, 70), (230, 180, 110), (250, 220, 160)]
    light, shadow = max(sand, key=lum), min(sand, key=lum)
    for i in range(3):
        f = i / 2
        colour = mix(plan.sky[-1], mix(light, shadow, f), 0.45 + 0.55 * f)
        if plan.dark:
            # Sand by night takes on the sky's cool darkness instead of glowing orange.
            colour = mix(colour, plan.sky[0], 0.55)
        mean = hy - hy * 0.06 * (3 - i) if water else h * (0.7 + 0.1 * i)
        amp = h * 0.05 * (1 + i * 0.5)
        waves = [
            (rng.uniform(0.6, 2.2), rng.uniform(0, 6.3), rng.uniform(0.3, 1)) for _ in range(3)
        ]
        pts: list[Point] = [(-2, (hy if water else h) + 2)]
        for k in range(97):
            v = sum(a * math.sin(fr * 2 * math.pi * k / 96 + ph) for fr, ph, a in waves)
            pts.append((w * k / 96, mean - amp * v / 2))
        pts.append((w + 2, (hy if water else h) + 2))
        draw.polygon(pts, fill=colour)


def draw_city(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """A two-layer skyline of rectangles with lit windows in accent colours."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    water = "water" in plan.motifs
    base = hy + 1 if water else h
    unit = max(4.0, math.sqrt(w * h) / 16, w / 60)  # bounded building count on thin banners
    dark = mix(plan.sky[0], (8, 8, 16), 0.6)
    lights = [c for c in plan.accents if lum(c) > 110][:4] or [(255, 210, 120)]
    budget = 2500  # caps window rectangles so huge images stay fast
    for layer in (0, 1):
        colour = mix(ramp(plan.sky, 0.6), dark, 0.5 if layer == 0 else 1.0)
        x = -rng.uniform(0, unit)
        while x < w:
            bw = unit * rng.uniform(0.6, 1.5) * (0.8 if layer == 0 else 1.0)
            frac = rng.uniform(0.15, 0.4) + (0.2 if rng.random() < 0.15 else 0)
            frac += 0.12 if layer == 0 else 0
            top = base - hy * min(0.92, frac * (1.0 if water else 0.9))
            draw.rectangle((x, top, x + bw, base), fill=colour)
            if rng.random() < 0.35:
                # Stepped crown or antenna so the skyline does not look like a bar chart.
                inset, step = bw * rng.uniform(0.2, 0.35), unit * rng.uniform(0.15, 0.35)
                draw.rectangle((x + inset, top - step, x + bw - inset, top), fill=colour)
                if rng.random() < 0.6:
                    ax, lw = x + bw / 2, max(1, round(unit / 30))
                    draw.line((ax, top - step, ax, top - step - unit * 0.5), fill=colour, width=lw)
            if layer == 1 and budget > 0:
                budget -= _windows(draw, rng, (x, top, x + bw, base), unit, lights, colour)
            x += bw + (unit * rng.uniform(0.0, 0.25) if rng.random() < 0.5 else 0)


def _windows(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    box: tuple[float, float, float, float],
    unit: float,
    lights: list[RGB],
    wall: RGB,
) -> int:
    """Light a random subset of a building's window grid; return how many were drawn."""
    x0, top, x1, base = box
    ww = max(1.0, unit * 0.07)
    pitch, row = ww * 2.4, ww * 2.8
    cols, rows = int((x1 - x0 - ww) / pitch), int((base - top - pitch) / row)
    if cols < 1 or rows < 1:
        return 1
    light = rng.choice(lights)
    dim = mix(wall, light, 0.35)
    density = rng.uniform(0.2, 0.55)
    ox = x0 + (x1 - x0 - (cols - 1) * pitch - ww) / 2
    drawn = 1
    for r in range(rows):
        y = top + pitch + r * row
        for c in range(cols):
            roll = rng.random()
            if roll < density:
                wx = ox + c * pitch
                fill = light if roll < density * 0.7 else dim
                draw.rectangle((wx, y, wx + ww, y + ww * 1.4), fill=fill)
                drawn += 1
    return drawn


def draw_water(
    draw: ImageDraw.ImageDraw, plan: Plan, body: tuple[float, float, float] | None
) -> None:
    """Horizontal wave bands below the horizon, plus a broken reflection of the sun/moon."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    tones = plan.water or [(20, 70, 120), (40, 120, 160), (110, 180, 210)]
    light = mix(plan.sky[-1], max(tones, key=lum), 0.55)
    deep = mix(min(tones, key=lum), (4, 10, 25), 0.35 if plan.dark else 0.1)
    if plan.dark:
        light = mix(light, deep, 0.4)
    n, depth, g = 16, h - hy, math.sqrt(w * h)
    edges = [hy + depth * (i / n) ** 1.5 for i in range(n + 1)]
    for i in range(n):
        # Alternating tones make the bands read as rolling swell, not a flat gradient.
        colour = mix(light, deep, (i / (n - 1)) ** 0.8)
        if i % 2:
            colour = mix(colour, deep, 0.12)
        amp = g * 0.002 + depth * 0.02 * (i / n)
        wl, ph = w / rng.uniform(3, 7), rng.uniform(0, 2 * math.pi)
        pts: list[Point] = [(-2, h + 2)]
        for k in range(65):
            x = w * k / 64
            pts.append((x, edges[i] + amp * math.sin(2 * math.pi * x / wl + ph) if i else hy))
        pts.append((w + 2, h + 2))
        draw.polygon(pts, fill=colour)
    # Short highlight strokes give the water some sparkle.
    glint = mix(light, WHITE, 0.45)
    for _ in range(int(30 + 50 * w / max(w, h))):
        t = rng.random()
        y, x = hy + depth * t**1.6, rng.uniform(0, w)
        length = w * rng.uniform(0.01, 0.05) * (0.3 + t)
        lw = max(1, round(g / 700 * (0.5 + t)))
        draw.line((x, y, x + length, y), fill=mix(glint, deep, t * 0.6), width=lw)
    if body is None:
        return
    cx, _, r = body
    colour = mix((255, 240, 200), plan.sky[-1], 0.3) if plan.body == "sun" else (235, 235, 225)
    for i in range(12):
        t = i / 12
        y = hy + depth * (0.02 + 0.9 * t**1.2)
        half = r * (1.0 - 0.7 * t) * rng.uniform(0.5, 1.1)
        off = rng.uniform(-0.15, 0.15) * r
        thick = max(1.0, g / 300 * (0.6 + t))
        fill = mix(colour, deep, 0.1 + 0.55 * t)
        draw.rectangle((cx - half + off, y, cx + half + off, y + thick), fill=fill)


def draw_trees(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """A row of pines (or round trees) standing on the ground or along the far shore."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    greens = plan.foliage or [(24, 70, 45), (40, 100, 60)]
    base_col = mix(min(greens, key=lum), plan.sky[0], 0.25)
    if plan.dark:
        base_col = mix(base_col, (4, 6, 12), 0.6)
    pine = plan.snowy or rng.random() < 0.7
    if "water" in plan.motifs:
        # A distant shoreline forest sitting on the horizon line.
        rows = [(hy + 1, min(w, h) * 0.08, 0.5)]
    else:
        ground = mix(base_col, WHITE if plan.snowy else plan.sky[-1], 0.75 if plan.snowy else 0.15)
        amp, ph = h * 0.03, rng.uniform(0, 6.3)
        hill = [(w * k / 32, hy + amp * math.sin(ph + k / 5)) for k in range(33)]
        draw.polygon(
            [(-2, h + 2), (-2, hill[0][1]), *hill, (w + 2, hill[-1][1]), (w + 2, h + 2)],
            fill=ground,
        )
        big = min(h * 0.45, max(w, h) * 0.2) * rng.uniform(0.7, 1.25)
        rows = [(hy - h * 0.01, big * 0.55, 0.45), (hy + h * 0.05, big, 0.0)]
    for base_y, size, haze in rows:
        colour = mix(base_col, plan.sky[-1], haze)
        x = -size * 0.3
        while x < w + size * 0.3:
            s = size * rng.uniform(0.6, 1.15)
            y = base_y + rng.uniform(-0.03, 0.05) * size
            if pine:
                _pine(draw, x, y, s, colour, plan.snowy)
            else:
                _round_tree(draw, x, y, s, colour)
            # The floor keeps the tree count bounded on extreme aspect ratios.
            x += max(s * rng.uniform(0.22, 0.5), w / 150)
    if "water" not in plan.motifs and rng.random() < 0.4:
        # Framing foreground trees at one edge give depth, like a poster's repoussoir.
        side = rng.choice((0.0, 1.0))
        colour = mix(base_col, (0, 0, 0), 0.25)
        for k in range(rng.randint(1, 2)):
            s = min(h * rng.uniform(0.55, 0.8), w * 1.5)
            x = w * abs(side - rng.uniform(0.0, 0.06)) + (
                s * 0.25 * k if side == 0 else -s * 0.25 * k
            )
            if pine:
                _pine(draw, x, h + s * 0.05, s, colour, plan.snowy)
            else:
                _round_tree(draw, x, h + s * 0.05, s, colour)


def _pine(
    draw: ImageDraw.ImageDraw, x: float, base: float, s: float, colour: RGB, snowy: bool
) -> None:
    """Draw three stacked triangles on a short trunk; snowy trees get white tips."""
    draw.rectangle(
        (x - s * 0.03, base - s * 0.14, x + s * 0.03, base), fill=mix(colour, (40, 25, 15), 0.5)
    )
    snow = mix(colour, (250, 252, 255), 0.85)
    for i in range(3):
        tier_base = base - s * (0.1 + 0.25 * i)
        tier_top = tier_base - s * 0.42
        half = s * (0.22 - 0.05 * i)
        draw.polygon([(x - half, tier_base), (x + half, tier_base), (x, tier_top)], fill=colour)
        if snowy:
            cap_y = tier_top + (tier_base - tier_top) * 0.35
            draw.polygon(
                [(x - half * 0.35, cap_y), (x + half * 0.35, cap_y), (x, tier_top)], fill=snow
            )


def _round_tree(draw: ImageDraw.ImageDraw, x: float, base: float, s: float, colour: RGB) -> None:
    """Draw a trunk with an oval canopy."""
    draw.rectangle(
        (x - s * 0.035, base - s * 0.45, x + s * 0.035, base), fill=mix(colour, (40, 25, 15), 0.5)
    )
    draw.ellipse((x - s * 0.22, base - s * 0.95, x + s * 0.22, base - s * 0.35), fill=colour)
