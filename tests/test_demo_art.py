"""Tests for the demo model's offline picture generator (webapp/providers/demo_art/)."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from webapp.providers.demo_art import MOTIF_WORDS, PALETTE_WORDS, render_image

PROJECT_ROOT = Path(__file__).resolve().parents[1]

PROMPTS = [
    "A beautiful sunset over mountains with vibrant colors",
    "A futuristic cityscape at night",
    "deep blue ocean waves",
    "a quiet forest in winter snow",
    "red fire lava",
    "a cat playing the piano",
]

# Same import in a child process (run from the project root), printing the pixel digest.
CHILD_SCRIPT = """
import hashlib, sys
from webapp.providers.demo_art import render_image
img = render_image(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
print(hashlib.sha256(img.tobytes()).hexdigest())
"""


def _digest(img: Image.Image) -> str:
    """Sha256 of the raw pixels."""
    return hashlib.sha256(img.tobytes()).hexdigest()


def _changed_fraction(a: Image.Image, b: Image.Image, threshold: int = 8) -> float:
    """Fraction of pixels whose greyscale difference exceeds the threshold."""
    histogram = ImageChops.difference(a, b).convert("L").histogram()
    return sum(histogram[threshold:]) / (a.width * a.height)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_same_inputs_give_identical_pixels(prompt: str) -> None:
    """Rendering twice in one process gives byte-identical output."""
    first = render_image(prompt, 1234, 320, 200)
    second = render_image(prompt, 1234, 320, 200)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_identical_across_processes(hash_seed: str) -> None:
    """A fresh interpreter with a different str-hash salt reproduces the same pixels."""
    prompt, seed, width, height = "A beautiful sunset over mountains, forest & sea", 987, 256, 160
    expected = _digest(render_image(prompt, seed, width, height))
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    args = [prompt, str(seed), str(width), str(height)]
    result = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("prompt", PROMPTS)
def test_different_seed_changes_the_picture(prompt: str) -> None:
    """Another seed gives another picture, not just a few shifted pixels."""
    a = render_image(prompt, 1, 256, 256)
    b = render_image(prompt, 2, 256, 256)
    assert a.tobytes() != b.tobytes()
    assert _changed_fraction(a, b) > 0.2


@pytest.mark.parametrize(
    ("prompt_a", "prompt_b"),
    [
        ("a cat", "a dog"),
        ("sunset over the sea", "forest in winter"),
        ("ocean", "sea"),
        ("!!!", "???"),
    ],
)
def test_different_prompt_changes_the_picture(prompt_a: str, prompt_b: str) -> None:
    """Another prompt with the same seed gives a clearly different picture."""
    a = render_image(prompt_a, 7, 256, 256)
    b = render_image(prompt_b, 7, 256, 256)
    assert a.tobytes() != b.tobytes()
    assert _changed_fraction(a, b) > 0.1


def test_prompt_case_and_spacing_do_not_matter() -> None:
    """Word matching is case-insensitive, so the whole picture is too."""
    a = render_image("Sunset over MOUNTAINS", 3, 200, 120)
    b = render_image("  sunset   over mountains ", 3, 200, 120)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("width", "height"),
    [(128, 128), (2048, 2048), (2048, 128), (128, 2048), (1344, 768), (768, 1344), (1, 1)],
)
def test_size_and_mode(width: int, height: int) -> None:
    """Any supported size, including extreme aspects, comes back exactly as asked, in RGB."""
    img = render_image("A futuristic cityscape by the ocean at night", 5, width, height)
    assert img.size == (width, height)
    assert img.mode == "RGB"


@pytest.mark.parametrize(("width", "height"), [(0, 512), (512, -1), (512, 5000)])
def test_rejects_unsupported_sizes(width: int, height: int) -> None:
    """Nonsense sizes fail loudly instead of allocating huge or empty images."""
    with pytest.raises(ValueError):
        render_image("sunset", 1, width, height)


@pytest.mark.parametrize("seed", range(5))
def test_blue_prompt_is_blue(seed: int) -> None:
    """An ocean prompt is dominated by blue."""
    red, _, blue = ImageStat.Stat(render_image("deep blue ocean", seed, 256, 256)).mean
    assert blue > red


@pytest.mark.parametrize("seed", range(5))
def test_fire_prompt_is_red(seed: int) -> None:
    """A fire prompt is dominated by red."""
    red, _, blue = ImageStat.Stat(render_image("red fire lava", seed, 256, 256)).mean
    assert red > blue


@pytest.mark.parametrize("seed", range(3))
def test_snow_is_brighter_than_night(seed: int) -> None:
    """Mood words move overall brightness the way a viewer would expect."""
    snow = ImageStat.Stat(render_image("snow", seed, 192, 192).convert("L")).mean[0]
    night = ImageStat.Stat(render_image("night", seed, 192, 192).convert("L")).mean[0]
    assert snow > night + 60


def test_render_2048_is_fast() -> None:
    """A 2048x2048 picture of a busy scene costs well under half a second of CPU."""
    render_image("warm up", 0, 256, 256)  # exclude one-off import and cache costs
    start = time.process_time()
    render_image("city by the sea at sunset with mountains, pine forest and stars", 42, 2048, 2048)
    assert time.process_time() - start < 0.5


@pytest.mark.parametrize("prompt", ["!!!", "猫 🐱", "", "   ", "🐱🐱🐱", "\u200b", "x" * 5000])
def test_odd_prompts_still_render(prompt: str) -> None:
    """Punctuation-only, emoji, unicode, empty and huge prompts still give a picture."""
    img = render_image(prompt, 11, 160, 96)
    assert img.size == (160, 96)
    assert img.mode == "RGB"
    # Not a blank canvas: there is some tonal variation.
    assert max(hi - lo for lo, hi in ImageStat.Stat(img).extrema) > 20


def test_vocabularies_are_exposed() -> None:
    """The recognised words are public and contain the documented examples."""
    assert isinstance(PALETTE_WORDS, frozenset)
    assert isinstance(MOTIF_WORDS, frozenset)
    assert len(PALETTE_WORDS) >= 60
    assert {"sunset", "ocean", "forest", "night", "snow", "fire", "gold", "neon"} <= PALETTE_WORDS
    assert {"red", "green", "blue", "yellow", "purple", "orange", "black", "white"} <= (
        PALETTE_WORDS
    )
    assert {"mountain", "mountains", "city", "sun", "moon", "sea", "tree", "stars"} <= MOTIF_WORDS


def test_every_vocabulary_word_renders() -> None:
    """Each recognised word alone (and in upper case) draws without error."""
    words = sorted(PALETTE_WORDS | MOTIF_WORDS)
    for word in words:
        for prompt in (word, word.upper() + "!"):
            img = render_image(prompt, 3, 64, 48)
            assert img.size == (64, 48), prompt


@pytest.mark.parametrize(
    ("prompt", "other"),
    [("sunset", "mountains"), ("forest", "night"), ("neon city", "snow")],
)
def test_known_words_change_colours(prompt: str, other: str) -> None:
    """Palette words produce clearly different average colours from each other."""
    a = ImageStat.Stat(render_image(prompt, 0, 128, 128)).mean
    b = ImageStat.Stat(render_image(other, 0, 128, 128)).mean
    assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 30
