"""What the prompt's words mean: palettes, motifs, mood modifiers, and how to tokenise."""

import hashlib
import re
from collections.abc import Mapping

from webapp.providers.demo_art.colours import RGB, hsv

# Words whose colours describe an object (drawn as a motif) rather than the sky/atmosphere.
WATER_WORDS = frozenset(
    {"ocean", "sea", "water", "lake", "river", "wave", "waves", "beach", "bay", "harbor"}
)
FOLIAGE_WORDS = frozenset({"forest", "tree", "trees", "woods", "pine", "jungle", "grove"})
GROUND_WORDS = frozenset({"desert", "sand", "dune", "dunes"})

PALETTES: dict[str, tuple[RGB, ...]] = {
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
ALIASES: dict[str, str] = {
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
PALETTES.update({alias: PALETTES[noun] for alias, noun in ALIASES.items()})

# Words that tweak the whole palette instead of adding colours.
MODIFIERS: dict[str, str] = {
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

MOTIFS: dict[str, str] = {
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
STOPWORDS = frozenset(
    {"a", "an", "the", "of", "in", "on", "at", "with", "and", "or", "over", "under", "by"}
    | {"to", "for", "from", "into", "is", "are", "very", "some", "my", "this", "that", "its"}
    | {"it", "above", "below", "near", "beneath", "across", "through"}
)

PALETTE_WORDS: frozenset[str] = frozenset(PALETTES)
MOTIF_WORDS: frozenset[str] = frozenset(MOTIFS) | frozenset(
    w + "s" for w in MOTIFS if not w.endswith("s")
)

# Motifs that establish a ground/horizon line (everything else floats in the sky).
LANDSCAPE = ("mountains", "city", "water", "trees", "dunes")
WARM = frozenset(
    {"sunset", "sunrise", "dawn", "dusk", "twilight", "fire", "lava", "flame", "volcano"}
    | {"gold", "golden", "desert", "orange", "autumn", "summer", "amber", "coral", "red"}
)
SNOWY = frozenset({"snow", "ice", "winter", "frost"})
NEON = frozenset({"neon", "cyberpunk", "futuristic"})
# Unicode letters and digits only, so punctuation and emoji never form words.
_WORD_RE = re.compile(r"[^\W_]+")


def words(prompt: str) -> list[str]:
    """Split a prompt into lower-case word tokens, dropping punctuation and symbols."""
    return _WORD_RE.findall(prompt.casefold())


def lookup(word: str, table: Mapping[str, object]) -> str | None:
    """Return the table key for a word, tolerating simple English plurals."""
    if word in table:
        return word
    for suffix in ("es", "s"):
        if word.endswith(suffix) and word[: -len(suffix)] in table:
            return word[: -len(suffix)]
    return None


def digest(*parts: str) -> bytes:
    """Stable sha256 of the parts (Python's hash() is salted per process, so never use it)."""
    joined = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).digest()


def word_colour(word: str) -> RGB:
    """Derive a pleasant colour for an unknown word from its sha256."""
    d = digest("word", word)
    hue = int.from_bytes(d[:4], "big") / 2**32
    return hsv(hue, 0.45 + d[4] / 255 * 0.35, 0.55 + d[5] / 255 * 0.4)
