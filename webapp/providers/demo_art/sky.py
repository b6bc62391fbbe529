"""The sky: soft background gradient and glows, and what floats in it (stars, sun, clouds)."""

import math

from PIL import Image, ImageDraw, ImageFilter

from webapp.providers.demo_art.colours import RGB, WHITE, mix, ramp, vivid
from webapp.providers.demo_art.plan import Plan, sky_at

# Long side of the low-resolution background canvas; soft content is upscaled from here
# because blurring or per-pixel work at 2048x2048 would blow the CPU budget.
_BG_LONG_SIDE = 96


# --------------------------------------------------------------------------- background


def background(plan: Plan) -> Image.Image:
    """Paint gradient, glows and vignette small, then upscale once (cheap and smooth)."""
    w, h = plan.w, plan.h
    k = max(w, h) / _BG_LONG_SIDE
    sw, sh = max(2, round(w / k)), max(2, round(h / k))
    sx, sy = w / sw, h / sh
    # Project pixel centres on the gradient direction; vertical when angle == 0.
    dx, dy = math.sin(plan.angle), math.cos(plan.angle)
    corners = [x * dx + y * dy for x in (0, w) for y in (0, plan.hy)]
    lo, hi = min(corners), max(corners)
    scale = 255 / max(1e-6, hi - lo)
    data = bytearray()
    for j in range(sh):
        base = (j + 0.5) * sy * dy - lo
        data += bytes(
            max(0, min(255, int((base + (i + 0.5) * sx * dx) * scale))) for i in range(sw)
        )
    tmap = Image.frombytes("L", (sw, sh), bytes(data))
    lut: list[int] = []
    for i in range(256):
        lut.extend(ramp(plan.sky, i / 255))
    # An L image with a palette becomes "P"; converting applies the gradient LUT in C.
    tmap.putpalette(lut)
    small = tmap.convert("RGB")

    for cx, cy, r, colour, strength in plan.glows:
        mask = Image.new("L", (sw, sh), 0)
        rr = max(1.0, r / k)
        box = (cx / k - rr, cy / k - rr, cx / k + rr, cy / k + rr)
        ImageDraw.Draw(mask).ellipse(box, fill=round(255 * strength))
        mask = mask.filter(ImageFilter.GaussianBlur(rr * 0.5))
        small = Image.composite(Image.new("RGB", (sw, sh), colour), small, mask)

    # A gentle vignette frames the picture like a print.
    vig = Image.radial_gradient("L").resize((sw, sh), Image.Resampling.BILINEAR)
    vig = vig.point(lambda v: max(0, v - 150) * 2 // 3)
    small = Image.composite(Image.new("RGB", (sw, sh), (0, 0, 0)), small, vig)

    if w * h > 16 * sw * sh:
        # Bicubic first for smooth curves, then a cheap bilinear pass to full size.
        small = small.resize((max(sw, w // 4), max(sh, h // 4)), Image.Resampling.BICUBIC)
        return small.resize((w, h), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BICUBIC)


# --------------------------------------------------------------------------- sky motifs


def draw_stars(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Scatter small star dots, denser near the top of the sky."""
    rng, w = plan.rng, plan.w
    g = math.sqrt(w * plan.h)
    tints = ((255, 255, 255), (255, 240, 210), (200, 220, 255))
    for _ in range(min(600, int(w * plan.h / 3500) + 60)):
        x = rng.uniform(0, w)
        y = plan.hy * 0.95 * rng.random() ** 1.4
        bright = rng.random() ** 2
        colour = mix(sky_at(plan, y), rng.choice(tints), 0.35 + 0.65 * bright)
        r = g / 1500 * (0.6 + 2.0 * bright)
        if r < 0.75:
            draw.point((x, y), fill=colour)
            continue
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        if bright > 0.85 and r > 1.5:
            # A few twinkles with cross spikes read as "stars" rather than dust.
            s, lw = r * 4, max(1, round(r / 3))
            draw.line((x - s, y, x + s, y), fill=colour, width=lw)
            draw.line((x, y - s, x, y + s), fill=colour, width=lw)


def draw_body(draw: ImageDraw.ImageDraw, plan: Plan, body: tuple[float, float, float]) -> None:
    """Draw the sun (gradient disc, sometimes retro-striped) or a cratered moon."""
    rng = plan.rng
    cx, cy, r = body
    if plan.body == "sun":
        top = mix(plan.sky[-1], (255, 245, 200), 0.75)
        reddest = max(plan.accents[:6], key=lambda c: c[0] - c[2])
        bottom = mix(top, mix(reddest, (255, 110, 60), 0.4), 0.75 if plan.warm else 0.2)
        _gradient_disc(draw, cx, cy, r, top, bottom, plan.neon or rng.random() < 0.35)
        return
    pale = mix((240, 238, 225), plan.sky[-1], 0.15)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=pale)
    shade = mix(pale, plan.sky[0], 0.15)
    for _ in range(4):
        a, d = rng.uniform(0, 2 * math.pi), r * rng.uniform(0.1, 0.6)
        cr = r * rng.uniform(0.1, 0.22)
        mx, my = cx + math.cos(a) * d, cy + math.sin(a) * d
        draw.ellipse((mx - cr, my - cr, mx + cr, my + cr), fill=shade)


def _gradient_disc(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, top: RGB, bottom: RGB, gaps: bool
) -> None:
    """Fill a disc with a vertical gradient by stacking thin horizontal chords."""
    n = max(4, min(600, round(r * 1.5)))
    for i in range(n):
        y0 = cy - r + 2 * r * i / n
        y1 = cy - r + 2 * r * (i + 1) / n
        mid = (y0 + y1) / 2 - cy
        if gaps and mid > 0:
            # Stripes that widen towards the bottom: the classic synthwave sun.
            phase = mid / r * 6
            if phase - int(phase) < 0.15 + 0.3 * mid / r:
                continue
        half = math.sqrt(max(0.0, r * r - mid * mid))
        draw.rectangle((cx - half, y0, cx + half, y1), fill=mix(top, bottom, i / max(1, n - 1)))


def draw_clouds(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Flat poster-style clouds for daytime skies."""
    rng, w = plan.rng, plan.w
    if "clouds" in plan.motifs:
        count = rng.randint(3, 5)
    elif plan.landscape and not plan.dark and "stars" not in plan.motifs:
        count = rng.choice((0, 0, 1, 2, 3))
    else:
        return
    g = math.sqrt(w * plan.h)
    for _ in range(count):
        s = g * rng.uniform(0.06, 0.12)
        cx, cy = rng.uniform(0, w), plan.hy * rng.uniform(0.12, 0.55)
        colour = mix(WHITE, sky_at(plan, cy), rng.uniform(0.15, 0.4))
        rad = round(s * 0.28)
        draw.rounded_rectangle((cx - s, cy - rad, cx + s, cy + rad), radius=rad, fill=colour)
        for bx, by, br in ((-0.45, -0.15, 0.36), (0.05, -0.3, 0.5), (0.5, -0.1, 0.32)):
            x, y, rr = cx + bx * s, cy + by * s, br * s * rng.uniform(0.85, 1.15)
            draw.ellipse((x - rr, y - rr, x + rr, min(y + rr, cy + rad)), fill=colour)


def draw_snowfall(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Soft white flakes over the whole scene."""
    rng, w, h = plan.rng, plan.w, plan.h
    g = math.sqrt(w * h)
    for _ in range(min(400, int(w * h / 9000) + 30)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = g / 1000 * rng.uniform(0.8, 3.0)
        colour = mix(sky_at(plan, y), WHITE, rng.uniform(0.6, 0.95))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def draw_rain(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Slanted translucent-looking streaks (pale lines blended with the sky colour)."""
    rng, w, h = plan.rng, plan.w, plan.h
    g = math.sqrt(w * h)
    slant = rng.uniform(-0.25, 0.25)
    lw = max(1, round(g / 900))
    for _ in range(min(350, int(w * h / 8000) + 40)):
        x, y = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(0, h)
        length = g * rng.uniform(0.02, 0.06)
        colour = mix(sky_at(plan, y), (225, 235, 245), rng.uniform(0.35, 0.7))
        draw.line((x, y, x + slant * length, y + length), fill=colour, width=lw)


def draw_planet(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Draw a planet (often ringed) and sometimes a moon: the focal point of space scenes."""
    rng, w, h = plan.rng, plan.w, plan.h
    u = min(w, h)
    r = u * rng.uniform(0.12, 0.24)
    cx, cy = w * rng.uniform(0.25, 0.75), h * rng.uniform(0.3, 0.7)
    colours = plan.accents[:6]
    # Night palettes are muted, so lift saturation and value to make the planet pop.
    body = vivid(rng.choice(colours[:3]), rng.uniform(-0.08, 0.08))
    if rng.random() < 0.6:
        # A small companion moon placed diagonally away from the planet.
        mr = r * rng.uniform(0.18, 0.3)
        a = rng.uniform(0, 2 * math.pi)
        mx, my = cx + math.cos(a) * r * 2.4, cy + math.sin(a) * r * 2.4
        moon = vivid(rng.choice(colours), rng.uniform(0.3, 0.7))
        _gradient_disc(draw, mx, my, mr, moon, mix(moon, plan.sky[0], 0.5), False)
    ringed = rng.random() < 0.65
    ring = mix(rng.choice(colours), WHITE, 0.45)
    rw = max(1, round(r * 0.06))
    tilt = rng.uniform(0.3, 0.5)
    box = (cx - r * 1.8, cy - r * tilt, cx + r * 1.8, cy + r * tilt)
    # Back half of the ring, then the planet, then the front half: fake depth.
    if ringed:
        draw.arc(box, 180, 360, fill=ring, width=rw)
    light = mix(body, WHITE, 0.3)
    _gradient_disc(draw, cx, cy, r, light, mix(body, plan.sky[0], 0.45), False)
    if ringed:
        draw.arc(box, 0, 180, fill=ring, width=rw)


def draw_abstract(draw: ImageDraw.ImageDraw, plan: Plan) -> None:
    """Bauhaus-style composition of discs, rings and dots for prompts with no known motif."""
    rng, w, h = plan.rng, plan.w, plan.h
    u = min(w, h)
    cols = plan.accents[:6] + plan.sky[-2:]
    # Anchor the big disc on a rule-of-thirds point so the layout feels intentional.
    ax, ay = w * rng.choice((1 / 3, 2 / 3)), h * rng.choice((1 / 3, 2 / 3))
    r = u * rng.uniform(0.2, 0.3)
    _gradient_disc(draw, ax, ay, r, rng.choice(cols), rng.choice(cols), rng.random() < 0.3)
    for _ in range(rng.randint(1, 2)):
        rr = u * rng.uniform(0.08, 0.16)
        a = rng.uniform(0, 2 * math.pi)
        bx, by = ax + math.cos(a) * r * 1.1, ay + math.sin(a) * r * 1.1
        draw.ellipse((bx - rr, by - rr, bx + rr, by + rr), fill=rng.choice(cols))
    lw = max(1, round(u * 0.012))
    for _ in range(rng.randint(1, 2)):
        rr = u * rng.uniform(0.12, 0.35)
        cx, cy = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.2, 0.8)
        draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), outline=rng.choice(cols), width=lw)
    if rng.random() < 0.6:
        # Half disc resting on the bottom edge, like a rising shape.
        rr = u * rng.uniform(0.15, 0.28)
        cx = w * rng.uniform(0.15, 0.85)
        draw.pieslice((cx - rr, h - rr, cx + rr, h + rr), 180, 360, fill=rng.choice(cols))
    for _ in range(rng.randint(6, 14)):
        rr = u * rng.uniform(0.008, 0.025)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=rng.choice(cols))
