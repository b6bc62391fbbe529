"""Turn a prompt and seed into a Plan: every decision made before any pixel is drawn."""

import colorsys
import random
from dataclasses import dataclass, field

from webapp.providers.demo_art.colours import RGB, hsv, lum, mix, modify, ramp, sat
from webapp.providers.demo_art.vocabulary import (
    ALIASES,
    FOLIAGE_WORDS,
    GROUND_WORDS,
    LANDSCAPE,
    MODIFIERS,
    MOTIFS,
    NEON,
    PALETTES,
    SNOWY,
    STOPWORDS,
    WARM,
    WATER_WORDS,
    digest,
    lookup,
    word_colour,
    words,
)


@dataclass
class Plan:
    """Everything decided from the prompt and seed before any pixel is drawn."""

    w: int
    h: int
    rng: random.Random
    sky: list[RGB]
    accents: list[RGB]
    water: list[RGB]
    foliage: list[RGB]
    ground: list[RGB]
    motifs: list[str]
    dark: bool
    snowy: bool
    neon: bool
    warm: bool
    horizon: float
    angle: float
    body: str | None
    gentle: bool
    glows: list[tuple[float, float, float, RGB, float]] = field(default_factory=list)

    @property
    def landscape(self) -> bool:
        """Whether the scene has a ground line."""
        return any(m in self.motifs for m in LANDSCAPE)

    @property
    def hy(self) -> float:
        """Horizon row in pixels."""
        return self.horizon * self.h


def make_plan(prompt: str, seed: int, w: int, h: int) -> Plan:
    """Turn the prompt words and seed into palettes, motifs and a seeded RNG."""
    key = " ".join(prompt.casefold().split())
    rng = random.Random(int.from_bytes(digest("darkroom-demo", str(seed), key)[:16], "big"))
    sky: list[RGB] = []
    water: list[RGB] = []
    foliage: list[RGB] = []
    ground: list[RGB] = []
    unknown: list[RGB] = []
    motifs: list[str] = []
    mods: list[str] = []
    known: list[str] = []
    for word in words(prompt):
        pal = lookup(word, PALETTES)
        mot = lookup(word, MOTIFS)
        if mot is not None and MOTIFS[mot] not in motifs:
            motifs.append(MOTIFS[mot])
        if word in MODIFIERS:
            mods.append(MODIFIERS[word])
        if pal is None:
            if mot is None and word not in MODIFIERS and word not in STOPWORDS:
                unknown.append(word_colour(word))
            continue
        pal = ALIASES.get(pal, pal)
        known.append(pal)
        colours = list(PALETTES[pal])
        if pal in WATER_WORDS:
            water += colours
        elif pal in FOLIAGE_WORDS:
            foliage += colours
        elif pal in GROUND_WORDS:
            ground += colours
        else:
            sky += colours

    objects = water + foliage + ground
    if not sky and objects:
        # Object-only prompts ("ocean waves") still need a sky: a light wash of their colours.
        sky = [mix(c, (235, 240, 250), 0.35) for c in objects]
    if not sky:
        sky = _scheme(unknown[0] if unknown else hsv(rng.random(), 0.6, 0.8), rng)
    elif unknown:
        # Unknown words nudge the colours so that every prompt looks a little different.
        sky = [mix(c, unknown[i % len(unknown)], 0.12) for i, c in enumerate(sky)]
    if "stars" in motifs and sum(lum(c) for c in sky) / len(sky) > 60:
        # Stars need a night sky: fold in night tones so the top of the gradient goes dark.
        sky += list(PALETTES["night"][:3])

    hue_shift = rng.uniform(-0.03, 0.03)
    sat_mul = rng.uniform(0.9, 1.1)

    def tune(cs: list[RGB]) -> list[RGB]:
        """Apply the seed jitter and modifier words to a colour list."""
        return [modify(c, hue_shift, sat_mul, mods) for c in cs]

    stops = sorted(tune(sky), key=lum)
    if len(stops) > 4:
        stops = [stops[round(i * (len(stops) - 1) / 3)] for i in range(4)]
    landscape = any(m in motifs for m in LANDSCAPE)
    if not landscape and "sun" not in motifs and rng.random() < 0.5:
        stops.reverse()
    accents = sorted(tune(sky + objects + unknown), key=sat, reverse=True)
    dark = lum(stops[0]) < 60 and sum(lum(c) for c in stops) / len(stops) < 90
    if "water" in motifs:
        horizon = rng.uniform(0.56, 0.68)
    elif landscape:
        horizon = rng.uniform(0.8, 0.9)
    else:
        horizon = 1.0
    if "sun" in motifs:
        body: str | None = "sun"
    elif "moon" in motifs:
        body = "moon"
    elif landscape and rng.random() < (0.6 if dark else 0.35):
        # Seed-dependent extra so that different seeds give different compositions.
        body = "moon" if dark else "sun"
    else:
        body = None
    return Plan(
        w=w,
        h=h,
        rng=rng,
        sky=stops,
        accents=accents,
        water=tune(water),
        foliage=tune(foliage),
        ground=tune(ground),
        motifs=motifs,
        dark=dark,
        snowy=any(k in SNOWY for k in known),
        neon=any(k in NEON for k in known),
        warm=any(k in WARM for k in known),
        horizon=horizon,
        angle=0.0 if landscape or body else rng.uniform(-0.6, 0.6),
        body=body,
        gentle=any(lookup(word, MOTIFS) == "hill" for word in words(prompt)),
    )


def _scheme(base: RGB, rng: random.Random) -> list[RGB]:
    """Build a harmonious 4-colour sky from one base colour (analogous or split scheme)."""
    h, s, _ = colorsys.rgb_to_hsv(*(c / 255 for c in base))
    step = rng.choice((0.05, 0.08, -0.06, 0.42))
    s = max(0.35, min(0.8, s))
    return [
        hsv(h, s, 0.22),
        hsv(h + step, s * 0.9, 0.5),
        hsv(h + step * 2, s * 0.8, 0.78),
        hsv(h + step * 3, s * 0.55, 0.95),
    ]


def sky_at(plan: Plan, y: float) -> RGB:
    """Approximate background colour at row y, used to fade motifs into the haze."""
    return ramp(plan.sky, y / max(1.0, plan.hy))


# --------------------------------------------------------------------------- layout


def place_body(plan: Plan) -> tuple[float, float, float] | None:
    """Pick the centre and radius of the sun or moon, if the scene has one."""
    if plan.body is None:
        return None
    rng, w, h = plan.rng, plan.w, plan.h
    u = min(w, h)
    if plan.body == "moon":
        r = u * rng.uniform(0.07, 0.12)
        return (w * rng.uniform(0.15, 0.85), plan.hy * rng.uniform(0.2, 0.45), r)
    r = u * rng.uniform(0.13, 0.2)
    cx = w * rng.uniform(0.28, 0.72)
    if "water" in plan.motifs:
        cy = plan.hy - r * rng.uniform(0.05, 0.8)
    elif plan.landscape:
        cy = h * rng.uniform(0.3, 0.42)
    else:
        cy = h * rng.uniform(0.38, 0.55)
    return (cx, cy, r)


def plan_glows(plan: Plan, body: tuple[float, float, float] | None) -> None:
    """Decide soft light blobs (horizon haze, sun halo, nebulae, abstract blobs)."""
    rng, w, h = plan.rng, plan.w, plan.h
    u = min(w, h)
    if plan.landscape:
        plan.glows.append((w / 2, plan.hy, max(w, h / 2) * 0.6, plan.sky[-1], 0.35))
    if body is not None:
        halo = (255, 235, 190) if plan.body == "sun" else (220, 225, 255)
        plan.glows.append((body[0], body[1], body[2] * 3.2, halo, 0.45))
    n_blobs = 0 if plan.landscape else rng.randint(3, 5)
    if "stars" in plan.motifs and not plan.landscape:
        n_blobs += 2
    for _ in range(n_blobs):
        plan.glows.append(
            (
                rng.uniform(0, w),
                rng.uniform(0, plan.hy),
                u * rng.uniform(0.2, 0.45),
                rng.choice(plan.accents[:6]),
                rng.uniform(0.25, 0.5),
            )
        )
