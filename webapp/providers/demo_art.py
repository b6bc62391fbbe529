"""Deterministic, offline procedural poster art for Darkroom's built-in ``demo`` model."""

import colorsys
import hashlib
import itertools
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]
Point = tuple[float, float]

# Long side of the low-resolution background canvas; soft content is upscaled from here
# because blurring or per-pixel work at 2048x2048 would blow the CPU budget.
_BG_LONG_SIDE = 96

# Words whose colours describe an object (drawn as a motif) rather than the sky/atmosphere.
_WATER_WORDS = frozenset(
    {"ocean", "sea", "water", "lake", "river", "wave", "waves", "beach", "bay", "harbor"}
)
_FOLIAGE_WORDS = frozenset({"forest", "tree", "trees", "woods", "pine", "jungle", "grove"})
_GROUND_WORDS = frozenset({"desert", "sand", "dune", "dunes"})

_PALETTES: dict[str, tuple[RGB, ...]] = {
    # Atmospheres / moods.
    "sunset": ((46, 27, 89), (142, 45, 111), (232, 72, 85), (255, 140, 66), (255, 200, 87)),
    "sunrise": ((96, 110, 180), (250, 128, 114), (255, 179, 138), (255, 226, 170)),
    "dawn": ((80, 100, 170), (230, 140, 150), (255, 190, 150), (255, 236, 200)),
    "dusk": ((28, 28, 78), (90, 50, 120), (200, 90, 120), (250, 160, 120)),
    "twilight": ((20, 22, 70), (70, 50, 130), (170, 90, 150), (240, 150, 130)),
    "night": ((6, 8, 26), (18, 24, 64), (44, 40, 104), (84, 74, 150)),
    "midnight": ((4, 4, 18), (12, 16, 48), (30, 34, 90)),
    "space": ((4, 4, 16), (30, 16, 70), (90, 36, 140), (60, 120, 220)),
    "galaxy": ((6, 4, 22), (50, 20, 90), (140, 50, 160), (230, 110, 200)),
    "cosmos": ((4, 6, 20), (30, 30, 90), (100, 50, 160), (80, 170, 230)),
    "nebula": ((10, 6, 30), (90, 30, 120), (210, 70, 170), (90, 180, 240)),
    "aurora": ((8, 18, 40), (20, 90, 110), (40, 220, 150), (150, 80, 210)),
    "snow": ((130, 160, 205), (185, 210, 235), (225, 238, 250), (250, 252, 255)),
    "ice": ((90, 150, 200), (150, 205, 230), (205, 238, 248), (240, 250, 255)),
    "winter": ((110, 140, 190), (170, 195, 228), (215, 230, 245), (245, 248, 255)),
    "frost": ((150, 180, 220), (200, 225, 245), (240, 248, 255)),
    "fire": ((70, 0, 0), (180, 20, 10), (240, 80, 20), (255, 170, 30), (255, 230, 120)),
    "lava": ((40, 0, 0), (150, 10, 0), (230, 60, 0), (255, 140, 0)),
    "flame": ((110, 10, 0), (220, 60, 10), (255, 150, 20), (255, 220, 100)),
    "volcano": ((30, 10, 10), (120, 20, 10), (230, 70, 10), (255, 160, 40)),
    "gold": ((110, 70, 10), (200, 150, 40), (240, 200, 90), (255, 235, 170)),
    "golden": ((120, 80, 20), (215, 160, 50), (245, 205, 100), (255, 238, 180)),
    "neon": ((20, 0, 40), (255, 0, 170), (0, 240, 255), (120, 0, 255)),
    "cyberpunk": ((16, 4, 36), (230, 0, 160), (0, 220, 240), (255, 230, 0)),
    "city": ((25, 15, 50), (200, 40, 160), (0, 200, 230), (255, 200, 90)),
    "cityscape": ((22, 14, 48), (190, 40, 170), (0, 190, 235), (255, 190, 100)),
    "futuristic": ((10, 10, 40), (0, 160, 255), (180, 0, 255), (0, 255, 200)),
    "autumn": ((110, 35, 20), (190, 80, 30), (230, 150, 40), (250, 210, 120)),
    "spring": ((120, 190, 120), (170, 220, 140), (255, 200, 220), (250, 240, 170)),
    "summer": ((0, 140, 220), (90, 200, 240), (255, 220, 80), (255, 150, 60)),
    "storm": ((30, 34, 44), (70, 78, 92), (120, 128, 140), (180, 186, 195)),
    "rain": ((50, 60, 75), (95, 110, 125), (150, 162, 175), (200, 208, 215)),
    "fog": ((120, 125, 135), (170, 175, 182), (215, 218, 222)),
    "mist": ((140, 150, 160), (185, 192, 200), (225, 228, 232)),
    "cloud": ((110, 150, 210), (190, 210, 235), (245, 245, 250)),
    "sky": ((60, 120, 215), (130, 185, 240), (215, 235, 250)),
    "sun": ((255, 150, 40), (255, 200, 60), (255, 240, 180)),
    "moon": ((20, 25, 60), (110, 120, 170), (200, 205, 230)),
    "dream": ((120, 90, 200), (220, 150, 230), (255, 210, 230)),
    "candy": ((255, 120, 180), (150, 220, 255), (255, 240, 150)),
    # Objects (kept separate so e.g. "ocean" colours the water rather than the whole sky).
    "ocean": ((2, 48, 100), (4, 100, 150), (0, 160, 170), (144, 224, 239)),
    "sea": ((6, 56, 110), (10, 110, 155), (40, 170, 180), (160, 225, 235)),
    "water": ((20, 80, 135), (40, 135, 170), (110, 190, 210), (200, 235, 240)),
    "lake": ((18, 70, 110), (40, 120, 150), (120, 185, 200), (205, 230, 235)),
    "river": ((20, 80, 120), (50, 140, 160), (140, 200, 210)),
    "wave": ((8, 70, 125), (25, 140, 175), (225, 244, 250)),
    "beach": ((0, 140, 185), (120, 205, 225), (240, 220, 170)),
    "bay": ((10, 70, 120), (40, 140, 170), (180, 220, 230)),
    "forest": ((14, 52, 34), (30, 92, 54), (80, 140, 74), (165, 200, 120)),
    "tree": ((20, 64, 38), (44, 112, 60), (110, 170, 90)),
    "woods": ((18, 48, 30), (50, 90, 50), (120, 150, 90)),
    "pine": ((10, 50, 40), (26, 84, 60), (70, 130, 100)),
    "jungle": ((8, 64, 36), (36, 126, 56), (150, 200, 60)),
    "grove": ((30, 80, 40), (80, 140, 70), (180, 210, 130)),
    "desert": ((120, 70, 40), (200, 130, 70), (230, 180, 110), (250, 220, 160)),
    "sand": ((170, 120, 70), (220, 180, 120), (245, 225, 180)),
    "dune": ((140, 80, 40), (215, 145, 80), (240, 200, 140)),
    "rose": ((120, 20, 60), (210, 60, 120), (250, 140, 180), (255, 210, 225)),
    # Plain colour names.
    "red": ((120, 10, 20), (200, 20, 30), (240, 60, 50)),
    "crimson": ((110, 0, 25), (180, 10, 45), (220, 20, 60)),
    "orange": ((200, 80, 10), (245, 130, 30), (255, 190, 110)),
    "amber": ((180, 100, 0), (240, 160, 0), (255, 205, 80)),
    "yellow": ((200, 150, 0), (250, 210, 20), (255, 240, 130)),
    "green": ((20, 100, 45), (60, 170, 80), (160, 220, 120)),
    "emerald": ((0, 90, 60), (0, 140, 90), (80, 200, 130)),
    "mint": ((100, 200, 170), (170, 240, 210), (220, 255, 240)),
    "teal": ((0, 90, 95), (0, 140, 140), (100, 210, 200)),
    "turquoise": ((0, 130, 140), (40, 200, 200), (150, 235, 230)),
    "cyan": ((0, 120, 160), (0, 200, 230), (140, 240, 255)),
    "blue": ((10, 30, 120), (30, 80, 200), (110, 160, 250)),
    "navy": ((5, 10, 50), (15, 30, 90), (40, 60, 130)),
    "indigo": ((30, 15, 80), (60, 20, 130), (110, 80, 200)),
    "purple": ((60, 16, 100), (120, 50, 170), (190, 130, 230)),
    "violet": ((70, 20, 120), (140, 70, 210), (200, 160, 245)),
    "lavender": ((130, 110, 190), (180, 160, 230), (225, 210, 250)),
    "magenta": ((120, 0, 90), (200, 0, 150), (255, 80, 210)),
    "pink": ((200, 60, 130), (255, 110, 180), (255, 180, 215)),
    "coral": ((220, 90, 70), (255, 127, 80), (255, 185, 150)),
    "brown": ((70, 40, 18), (130, 80, 45), (190, 140, 95)),
    "black": ((4, 4, 6), (20, 20, 26), (50, 50, 60)),
    "white": ((190, 195, 205), (225, 228, 235), (250, 250, 252)),
    "grey": ((55, 57, 62), (120, 122, 130), (195, 197, 202)),
    "gray": ((55, 57, 62), (120, 122, 130), (195, 197, 202)),
    "silver": ((120, 125, 135), (170, 175, 185), (220, 224, 230)),
}

# Adjective forms share their noun's palette ("snowy mountains" should look like snow).
_ALIASES: dict[str, str] = {
    "snowy": "snow",
    "icy": "ice",
    "frozen": "ice",
    "wintry": "winter",
    "frosty": "frost",
    "fiery": "fire",
    "flaming": "flame",
    "stormy": "storm",
    "rainy": "rain",
    "foggy": "fog",
    "misty": "mist",
    "cloudy": "cloud",
    "sandy": "sand",
    "rosy": "rose",
    "starry": "night",
    "oceanic": "ocean",
    "forested": "forest",
    "wooded": "woods",
}
_PALETTES.update({alias: _PALETTES[noun] for alias, noun in _ALIASES.items()})

# Words that tweak the whole palette instead of adding colours.
_MODIFIERS: dict[str, str] = {
    "dark": "dark",
    "deep": "dark",
    "dim": "dark",
    "moody": "dark",
    "gloomy": "dark",
    "bright": "bright",
    "light": "bright",
    "sunny": "bright",
    "pastel": "pastel",
    "soft": "pastel",
    "pale": "pastel",
    "vibrant": "vivid",
    "vivid": "vivid",
    "colorful": "vivid",
    "colourful": "vivid",
    "saturated": "vivid",
}

_MOTIFS: dict[str, str] = {
    **dict.fromkeys(
        ("mountain", "peak", "hill", "ridge", "alps", "volcano", "cliff", "range"), "mountains"
    ),
    **dict.fromkeys(
        ("city", "cityscape", "building", "skyline", "skyscraper", "town", "street", "urban"),
        "city",
    ),
    **dict.fromkeys(("metropolis", "downtown", "cyberpunk", "tower"), "city"),
    **dict.fromkeys(("sun", "sunset", "sunrise", "dawn", "dusk", "sunshine"), "sun"),
    **dict.fromkeys(("moon", "lunar", "moonlight", "moonlit"), "moon"),
    **dict.fromkeys(
        ("sea", "ocean", "lake", "water", "wave", "river", "beach", "bay", "harbor", "pond"),
        "water",
    ),
    **dict.fromkeys(("tree", "forest", "woods", "pine", "jungle", "grove"), "trees"),
    **dict.fromkeys(("star", "starry", "night", "space", "galaxy", "cosmos"), "stars"),
    **dict.fromkeys(("nebula", "universe", "midnight", "starlight", "constellation"), "stars"),
    **dict.fromkeys(("desert", "sand", "dune"), "dunes"),
    **dict.fromkeys(("cloud", "cloudy", "sky"), "clouds"),
    **dict.fromkeys(("snow", "snowy", "snowfall", "snowing", "blizzard", "snowflake"), "snowfall"),
    **dict.fromkeys(("rain", "rainy", "raining", "storm", "stormy", "drizzle"), "rain"),
}

# Filler words carry no visual meaning, so they must not tint the picture.
_STOPWORDS = frozenset(
    {"a", "an", "the", "of", "in", "on", "at", "with", "and", "or", "over", "under", "by"}
    | {"to", "for", "from", "into", "is", "are", "very", "some", "my", "this", "that", "its"}
    | {"it", "above", "below", "near", "beneath", "across", "through"}
)

PALETTE_WORDS: frozenset[str] = frozenset(_PALETTES)
MOTIF_WORDS: frozenset[str] = frozenset(_MOTIFS) | frozenset(
    w + "s" for w in _MOTIFS if not w.endswith("s")
)

# Motifs that establish a ground/horizon line (everything else floats in the sky).
_LANDSCAPE = ("mountains", "city", "water", "trees", "dunes")
_WARM = frozenset(
    {"sunset", "sunrise", "dawn", "dusk", "twilight", "fire", "lava", "flame", "volcano"}
    | {"gold", "golden", "desert", "orange", "autumn", "summer", "amber", "coral", "red"}
)
_SNOWY = frozenset({"snow", "ice", "winter", "frost"})
_NEON = frozenset({"neon", "cyberpunk", "futuristic"})
_WHITE: RGB = (255, 255, 255)
# Unicode letters and digits only, so punctuation and emoji never form words.
_WORD_RE = re.compile(r"[^\W_]+")


@dataclass
class _Plan:
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
        return any(m in self.motifs for m in _LANDSCAPE)

    @property
    def hy(self) -> float:
        """Horizon row in pixels."""
        return self.horizon * self.h


def render_image(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """Draw a deterministic RGB picture for (prompt, seed, size)."""
    width, height = int(width), int(height)
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError(f"unsupported size {width}x{height}")
    plan = _make_plan(prompt, int(seed), width, height)
    body = _place_body(plan)
    _plan_glows(plan, body)
    img = _background(plan)
    draw = ImageDraw.Draw(img)
    # Painter's algorithm: far things first, the foreground last.
    if "stars" in plan.motifs:
        _draw_stars(draw, plan)
    if not plan.landscape and plan.body is None:
        if "stars" in plan.motifs:
            _draw_planet(draw, plan)
        else:
            _draw_abstract(draw, plan)
    if body is not None:
        _draw_body(draw, plan, body)
    _draw_clouds(draw, plan)
    if "mountains" in plan.motifs:
        _draw_mountains(draw, plan)
    elif _only_trees(plan) and plan.rng.random() < 0.6:
        # Seed-dependent backdrop hills so forest scenes vary between seeds.
        _draw_mountains(draw, plan, backdrop=True)
    if "dunes" in plan.motifs:
        _draw_dunes(draw, plan)
    if "city" in plan.motifs:
        _draw_city(draw, plan)
    if "water" in plan.motifs:
        _draw_water(draw, plan, body)
    if "trees" in plan.motifs:
        _draw_trees(draw, plan)
    if "snowfall" in plan.motifs:
        _draw_snowfall(draw, plan)
    if "rain" in plan.motifs:
        _draw_rain(draw, plan)
    return img


def _only_trees(plan: _Plan) -> bool:
    """Whether trees are the only ground motif (so there is room for backdrop hills)."""
    others = ("mountains", "city", "water", "dunes")
    return "trees" in plan.motifs and not any(m in plan.motifs for m in others)


# --------------------------------------------------------------------------- planning


def _words(prompt: str) -> list[str]:
    """Split a prompt into lower-case word tokens, dropping punctuation and symbols."""
    return _WORD_RE.findall(prompt.casefold())


def _lookup(word: str, table: Mapping[str, object]) -> str | None:
    """Return the table key for a word, tolerating simple English plurals."""
    if word in table:
        return word
    for suffix in ("es", "s"):
        if word.endswith(suffix) and word[: -len(suffix)] in table:
            return word[: -len(suffix)]
    return None


def _digest(*parts: str) -> bytes:
    """Stable sha256 of the parts (Python's hash() is salted per process, so never use it)."""
    joined = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).digest()


def _word_colour(word: str) -> RGB:
    """Derive a pleasant colour for an unknown word from its sha256."""
    d = _digest("word", word)
    hue = int.from_bytes(d[:4], "big") / 2**32
    return _hsv(hue, 0.45 + d[4] / 255 * 0.35, 0.55 + d[5] / 255 * 0.4)


def _make_plan(prompt: str, seed: int, w: int, h: int) -> _Plan:
    """Turn the prompt words and seed into palettes, motifs and a seeded RNG."""
    key = " ".join(prompt.casefold().split())
    rng = random.Random(int.from_bytes(_digest("darkroom-demo", str(seed), key)[:16], "big"))
    sky: list[RGB] = []
    water: list[RGB] = []
    foliage: list[RGB] = []
    ground: list[RGB] = []
    unknown: list[RGB] = []
    motifs: list[str] = []
    mods: list[str] = []
    known: list[str] = []
    for word in _words(prompt):
        pal = _lookup(word, _PALETTES)
        mot = _lookup(word, _MOTIFS)
        if mot is not None and _MOTIFS[mot] not in motifs:
            motifs.append(_MOTIFS[mot])
        if word in _MODIFIERS:
            mods.append(_MODIFIERS[word])
        if pal is None:
            if mot is None and word not in _MODIFIERS and word not in _STOPWORDS:
                unknown.append(_word_colour(word))
            continue
        pal = _ALIASES.get(pal, pal)
        known.append(pal)
        colours = list(_PALETTES[pal])
        if pal in _WATER_WORDS:
            water += colours
        elif pal in _FOLIAGE_WORDS:
            foliage += colours
        elif pal in _GROUND_WORDS:
            ground += colours
        else:
            sky += colours

    objects = water + foliage + ground
    if not sky and objects:
        # Object-only prompts ("ocean waves") still need a sky: a light wash of their colours.
        sky = [_mix(c, (235, 240, 250), 0.35) for c in objects]
    if not sky:
        sky = _scheme(unknown[0] if unknown else _hsv(rng.random(), 0.6, 0.8), rng)
    elif unknown:
        # Unknown words nudge the colours so that every prompt looks a little different.
        sky = [_mix(c, unknown[i % len(unknown)], 0.12) for i, c in enumerate(sky)]
    if "stars" in motifs and sum(_lum(c) for c in sky) / len(sky) > 60:
        # Stars need a night sky: fold in night tones so the top of the gradient goes dark.
        sky += list(_PALETTES["night"][:3])

    hue_shift = rng.uniform(-0.03, 0.03)
    sat_mul = rng.uniform(0.9, 1.1)

    def tune(cs: list[RGB]) -> list[RGB]:
        """Apply the seed jitter and modifier words to a colour list."""
        return [_modify(c, hue_shift, sat_mul, mods) for c in cs]

    stops = sorted(tune(sky), key=_lum)
    if len(stops) > 4:
        stops = [stops[round(i * (len(stops) - 1) / 3)] for i in range(4)]
    landscape = any(m in motifs for m in _LANDSCAPE)
    if not landscape and "sun" not in motifs and rng.random() < 0.5:
        stops.reverse()
    accents = sorted(tune(sky + objects + unknown), key=_sat, reverse=True)
    dark = _lum(stops[0]) < 60 and sum(_lum(c) for c in stops) / len(stops) < 90
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
    return _Plan(
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
        snowy=any(k in _SNOWY for k in known),
        neon=any(k in _NEON for k in known),
        warm=any(k in _WARM for k in known),
        horizon=horizon,
        angle=0.0 if landscape or body else rng.uniform(-0.6, 0.6),
        body=body,
        gentle=any(_lookup(word, _MOTIFS) == "hill" for word in _words(prompt)),
    )


def _scheme(base: RGB, rng: random.Random) -> list[RGB]:
    """Build a harmonious 4-colour sky from one base colour (analogous or split scheme)."""
    h, s, _ = colorsys.rgb_to_hsv(*(c / 255 for c in base))
    step = rng.choice((0.05, 0.08, -0.06, 0.42))
    s = max(0.35, min(0.8, s))
    return [
        _hsv(h, s, 0.22),
        _hsv(h + step, s * 0.9, 0.5),
        _hsv(h + step * 2, s * 0.8, 0.78),
        _hsv(h + step * 3, s * 0.55, 0.95),
    ]


# --------------------------------------------------------------------------- colour maths


def _hsv(h: float, s: float, v: float) -> RGB:
    """Convert HSV floats to an 8-bit RGB tuple."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return (round(r * 255), round(g * 255), round(b * 255))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend two colours linearly: t=0 gives a, t=1 gives b."""
    t = max(0.0, min(1.0, t))
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _lum(c: RGB) -> float:
    """Perceived brightness, 0..255."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _sat(c: RGB) -> float:
    """Saturation weighted by value, used to pick lively accent colours."""
    _, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    return s * (0.4 + v)


def _modify(c: RGB, hue_shift: float, sat_mul: float, mods: list[str]) -> RGB:
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
    return _hsv(h, s, v)


def _vivid(c: RGB, hue_shift: float) -> RGB:
    """Return a saturated, bright variant of a colour (optionally hue-rotated)."""
    h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    return _hsv(h + hue_shift, max(s, 0.5), max(v, 0.85))


def _ramp(stops: list[RGB], t: float) -> RGB:
    """Colour at position t (0..1) of a multi-stop gradient."""
    if len(stops) == 1:
        return stops[0]
    t = max(0.0, min(1.0, t)) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    return _mix(stops[i], stops[i + 1], t - i)


def _sky_at(plan: _Plan, y: float) -> RGB:
    """Approximate background colour at row y, used to fade motifs into the haze."""
    return _ramp(plan.sky, y / max(1.0, plan.hy))


# --------------------------------------------------------------------------- background


def _place_body(plan: _Plan) -> tuple[float, float, float] | None:
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


def _plan_glows(plan: _Plan, body: tuple[float, float, float] | None) -> None:
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


def _background(plan: _Plan) -> Image.Image:
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
        lut.extend(_ramp(plan.sky, i / 255))
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


def _draw_stars(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """Scatter small star dots, denser near the top of the sky."""
    rng, w = plan.rng, plan.w
    g = math.sqrt(w * plan.h)
    tints = ((255, 255, 255), (255, 240, 210), (200, 220, 255))
    for _ in range(min(600, int(w * plan.h / 3500) + 60)):
        x = rng.uniform(0, w)
        y = plan.hy * 0.95 * rng.random() ** 1.4
        bright = rng.random() ** 2
        colour = _mix(_sky_at(plan, y), rng.choice(tints), 0.35 + 0.65 * bright)
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


def _draw_body(draw: ImageDraw.ImageDraw, plan: _Plan, body: tuple[float, float, float]) -> None:
    """Draw the sun (gradient disc, sometimes retro-striped) or a cratered moon."""
    rng = plan.rng
    cx, cy, r = body
    if plan.body == "sun":
        top = _mix(plan.sky[-1], (255, 245, 200), 0.75)
        reddest = max(plan.accents[:6], key=lambda c: c[0] - c[2])
        bottom = _mix(top, _mix(reddest, (255, 110, 60), 0.4), 0.75 if plan.warm else 0.2)
        _gradient_disc(draw, cx, cy, r, top, bottom, plan.neon or rng.random() < 0.35)
        return
    pale = _mix((240, 238, 225), plan.sky[-1], 0.15)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=pale)
    shade = _mix(pale, plan.sky[0], 0.15)
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
        draw.rectangle((cx - half, y0, cx + half, y1), fill=_mix(top, bottom, i / max(1, n - 1)))


def _draw_clouds(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
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
        colour = _mix(_WHITE, _sky_at(plan, cy), rng.uniform(0.15, 0.4))
        rad = round(s * 0.28)
        draw.rounded_rectangle((cx - s, cy - rad, cx + s, cy + rad), radius=rad, fill=colour)
        for bx, by, br in ((-0.45, -0.15, 0.36), (0.05, -0.3, 0.5), (0.5, -0.1, 0.32)):
            x, y, rr = cx + bx * s, cy + by * s, br * s * rng.uniform(0.85, 1.15)
            draw.ellipse((x - rr, y - rr, x + rr, min(y + rr, cy + rad)), fill=colour)


def _draw_snowfall(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """Soft white flakes over the whole scene."""
    rng, w, h = plan.rng, plan.w, plan.h
    g = math.sqrt(w * h)
    for _ in range(min(400, int(w * h / 9000) + 30)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = g / 1000 * rng.uniform(0.8, 3.0)
        colour = _mix(_sky_at(plan, y), _WHITE, rng.uniform(0.6, 0.95))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _draw_rain(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """Slanted translucent-looking streaks (pale lines blended with the sky colour)."""
    rng, w, h = plan.rng, plan.w, plan.h
    g = math.sqrt(w * h)
    slant = rng.uniform(-0.25, 0.25)
    lw = max(1, round(g / 900))
    for _ in range(min(350, int(w * h / 8000) + 40)):
        x, y = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(0, h)
        length = g * rng.uniform(0.02, 0.06)
        colour = _mix(_sky_at(plan, y), (225, 235, 245), rng.uniform(0.35, 0.7))
        draw.line((x, y, x + slant * length, y + length), fill=colour, width=lw)


def _draw_planet(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """Draw a planet (often ringed) and sometimes a moon: the focal point of space scenes."""
    rng, w, h = plan.rng, plan.w, plan.h
    u = min(w, h)
    r = u * rng.uniform(0.12, 0.24)
    cx, cy = w * rng.uniform(0.25, 0.75), h * rng.uniform(0.3, 0.7)
    colours = plan.accents[:6]
    # Night palettes are muted, so lift saturation and value to make the planet pop.
    body = _vivid(rng.choice(colours[:3]), rng.uniform(-0.08, 0.08))
    if rng.random() < 0.6:
        # A small companion moon placed diagonally away from the planet.
        mr = r * rng.uniform(0.18, 0.3)
        a = rng.uniform(0, 2 * math.pi)
        mx, my = cx + math.cos(a) * r * 2.4, cy + math.sin(a) * r * 2.4
        moon = _vivid(rng.choice(colours), rng.uniform(0.3, 0.7))
        _gradient_disc(draw, mx, my, mr, moon, _mix(moon, plan.sky[0], 0.5), False)
    ringed = rng.random() < 0.65
    ring = _mix(rng.choice(colours), _WHITE, 0.45)
    rw = max(1, round(r * 0.06))
    tilt = rng.uniform(0.3, 0.5)
    box = (cx - r * 1.8, cy - r * tilt, cx + r * 1.8, cy + r * tilt)
    # Back half of the ring, then the planet, then the front half: fake depth.
    if ringed:
        draw.arc(box, 180, 360, fill=ring, width=rw)
    light = _mix(body, _WHITE, 0.3)
    _gradient_disc(draw, cx, cy, r, light, _mix(body, plan.sky[0], 0.45), False)
    if ringed:
        draw.arc(box, 0, 180, fill=ring, width=rw)


def _draw_abstract(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
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


# --------------------------------------------------------------------------- land motifs


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


def _draw_mountains(draw: ImageDraw.ImageDraw, plan: _Plan, backdrop: bool = False) -> None:
    """Layered ridges darkening towards the viewer; backdrop=True gives two pale low hills."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    water = "water" in plan.motifs
    layers = 2 if backdrop else rng.randint(3, 4)
    gentle = plan.gentle or backdrop
    haze = _mix(_ramp(plan.sky, 0.5), plan.sky[-1], 0.35)
    if plan.snowy:
        near = _mix((70, 90, 130), plan.sky[0], 0.3)
    else:
        near = _mix(plan.sky[0], (16, 14, 28), 0.5)
        if plan.foliage:
            near = _mix(near, min(plan.foliage, key=_lum), 0.4)
    for i in range(layers):
        f = i / (layers - 1)
        colour = _mix(haze, near, (0.2 + 0.3 * f) if backdrop else (0.3 + 0.7 * f))
        if backdrop:
            top = h * (0.5 + 0.12 * f + rng.uniform(-0.05, 0.03))
            bottom, base = h * (0.75 + 0.1 * f), h + 2
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
                draw.polygon(cap, fill=_mix(_WHITE, colour, 0.2))


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


def _draw_dunes(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """Smooth sand dunes built from a few summed sine waves."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    water = "water" in plan.motifs
    sand = plan.ground or [(200, 130, 70), (230, 180, 110), (250, 220, 160)]
    light, shadow = max(sand, key=_lum), min(sand, key=_lum)
    for i in range(3):
        f = i / 2
        colour = _mix(plan.sky[-1], _mix(light, shadow, f), 0.45 + 0.55 * f)
        if plan.dark:
            # Sand by night takes on the sky's cool darkness instead of glowing orange.
            colour = _mix(colour, plan.sky[0], 0.55)
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


def _draw_city(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """A two-layer skyline of rectangles with lit windows in accent colours."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    water = "water" in plan.motifs
    base = hy + 1 if water else h
    unit = max(4.0, math.sqrt(w * h) / 16, w / 60)  # bounded building count on thin banners
    dark = _mix(plan.sky[0], (8, 8, 16), 0.6)
    lights = [c for c in plan.accents if _lum(c) > 110][:4] or [(255, 210, 120)]
    budget = 2500  # caps window rectangles so huge images stay fast
    for layer in (0, 1):
        colour = _mix(_ramp(plan.sky, 0.6), dark, 0.5 if layer == 0 else 1.0)
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
    dim = _mix(wall, light, 0.35)
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


def _draw_water(
    draw: ImageDraw.ImageDraw, plan: _Plan, body: tuple[float, float, float] | None
) -> None:
    """Horizontal wave bands below the horizon, plus a broken reflection of the sun/moon."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    tones = plan.water or [(20, 70, 120), (40, 120, 160), (110, 180, 210)]
    light = _mix(plan.sky[-1], max(tones, key=_lum), 0.55)
    deep = _mix(min(tones, key=_lum), (4, 10, 25), 0.35 if plan.dark else 0.1)
    if plan.dark:
        light = _mix(light, deep, 0.4)
    n, depth, g = 16, h - hy, math.sqrt(w * h)
    edges = [hy + depth * (i / n) ** 1.5 for i in range(n + 1)]
    for i in range(n):
        # Alternating tones make the bands read as rolling swell, not a flat gradient.
        colour = _mix(light, deep, (i / (n - 1)) ** 0.8)
        if i % 2:
            colour = _mix(colour, deep, 0.12)
        amp = g * 0.002 + depth * 0.02 * (i / n)
        wl, ph = w / rng.uniform(3, 7), rng.uniform(0, 2 * math.pi)
        pts: list[Point] = [(-2, h + 2)]
        for k in range(65):
            x = w * k / 64
            pts.append((x, edges[i] + amp * math.sin(2 * math.pi * x / wl + ph) if i else hy))
        pts.append((w + 2, h + 2))
        draw.polygon(pts, fill=colour)
    # Short highlight strokes give the water some sparkle.
    glint = _mix(light, _WHITE, 0.45)
    for _ in range(int(30 + 50 * w / max(w, h))):
        t = rng.random()
        y, x = hy + depth * t**1.6, rng.uniform(0, w)
        length = w * rng.uniform(0.01, 0.05) * (0.3 + t)
        lw = max(1, round(g / 700 * (0.5 + t)))
        draw.line((x, y, x + length, y), fill=_mix(glint, deep, t * 0.6), width=lw)
    if body is None:
        return
    cx, _, r = body
    colour = _mix((255, 240, 200), plan.sky[-1], 0.3) if plan.body == "sun" else (235, 235, 225)
    for i in range(12):
        t = i / 12
        y = hy + depth * (0.02 + 0.9 * t**1.2)
        half = r * (1.0 - 0.7 * t) * rng.uniform(0.5, 1.1)
        off = rng.uniform(-0.15, 0.15) * r
        thick = max(1.0, g / 300 * (0.6 + t))
        fill = _mix(colour, deep, 0.1 + 0.55 * t)
        draw.rectangle((cx - half + off, y, cx + half + off, y + thick), fill=fill)


def _draw_trees(draw: ImageDraw.ImageDraw, plan: _Plan) -> None:
    """A row of pines (or round trees) standing on the ground or along the far shore."""
    rng, w, h, hy = plan.rng, plan.w, plan.h, plan.hy
    greens = plan.foliage or [(24, 70, 45), (40, 100, 60)]
    base_col = _mix(min(greens, key=_lum), plan.sky[0], 0.25)
    if plan.dark:
        base_col = _mix(base_col, (4, 6, 12), 0.6)
    pine = plan.snowy or rng.random() < 0.7
    if "water" in plan.motifs:
        # A distant shoreline forest sitting on the horizon line.
        rows = [(hy + 1, min(w, h) * 0.08, 0.5)]
    else:
        ground = _mix(
            base_col, _WHITE if plan.snowy else plan.sky[-1], 0.75 if plan.snowy else 0.15
        )
        amp, ph = h * 0.03, rng.uniform(0, 6.3)
        hill = [(w * k / 32, hy + amp * math.sin(ph + k / 5)) for k in range(33)]
        draw.polygon(
            [(-2, h + 2), (-2, hill[0][1]), *hill, (w + 2, hill[-1][1]), (w + 2, h + 2)],
            fill=ground,
        )
        big = min(h * 0.45, max(w, h) * 0.2) * rng.uniform(0.7, 1.25)
        rows = [(hy - h * 0.01, big * 0.55, 0.45), (hy + h * 0.05, big, 0.0)]
    for base_y, size, haze in rows:
        colour = _mix(base_col, plan.sky[-1], haze)
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
        colour = _mix(base_col, (0, 0, 0), 0.25)
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
        (x - s * 0.03, base - s * 0.14, x + s * 0.03, base), fill=_mix(colour, (40, 25, 15), 0.5)
    )
    snow = _mix(colour, (250, 252, 255), 0.85)
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
        (x - s * 0.035, base - s * 0.45, x + s * 0.035, base), fill=_mix(colour, (40, 25, 15), 0.5)
    )
    draw.ellipse((x - s * 0.22, base - s * 0.95, x + s * 0.22, base - s * 0.35), fill=colour)
