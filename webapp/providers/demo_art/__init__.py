"""Deterministic, offline procedural poster art for Darkroom's built-in ``demo`` model.

The work is split by stage: ``vocabulary`` says what the prompt's words mean, ``plan``
turns words and seed into decisions, ``sky`` and ``landscape`` draw, and ``render_image``
below assembles the scene. ``colours`` holds the shared colour maths.
"""

from PIL import Image, ImageDraw

from webapp.providers.demo_art.landscape import (
    draw_city,
    draw_dunes,
    draw_mountains,
    draw_trees,
    draw_water,
)
from webapp.providers.demo_art.plan import Plan, make_plan, place_body, plan_glows
from webapp.providers.demo_art.sky import (
    background,
    draw_abstract,
    draw_body,
    draw_clouds,
    draw_planet,
    draw_rain,
    draw_snowfall,
    draw_stars,
)
from webapp.providers.demo_art.vocabulary import MOTIF_WORDS, PALETTE_WORDS

__all__ = ["MOTIF_WORDS", "PALETTE_WORDS", "render_image"]


def render_image(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """Draw a deterministic RGB picture for (prompt, seed, size)."""
    width, height = int(width), int(height)
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError(f"unsupported size {width}x{height}")
    plan = make_plan(prompt, int(seed), width, height)
    body = place_body(plan)
    plan_glows(plan, body)
    img = background(plan)
    draw = ImageDraw.Draw(img)
    # Painter's algorithm: far things first, the foreground last.
    if "stars" in plan.motifs:
        draw_stars(draw, plan)
    if not plan.landscape and plan.body is None:
        if "stars" in plan.motifs:
            draw_planet(draw, plan)
        else:
            draw_abstract(draw, plan)
    if body is not None:
        draw_body(draw, plan, body)
    draw_clouds(draw, plan)
    if "mountains" in plan.motifs:
        draw_mountains(draw, plan)
    elif _only_trees(plan) and plan.rng.random() < 0.6:
        # Seed-dependent backdrop hills so forest scenes vary between seeds.
        draw_mountains(draw, plan, backdrop=True)
    if "dunes" in plan.motifs:
        draw_dunes(draw, plan)
    if "city" in plan.motifs:
        draw_city(draw, plan)
    if "water" in plan.motifs:
        draw_water(draw, plan, body)
    if "trees" in plan.motifs:
        draw_trees(draw, plan)
    if "snowfall" in plan.motifs:
        draw_snowfall(draw, plan)
    if "rain" in plan.motifs:
        draw_rain(draw, plan)
    return img


def _only_trees(plan: Plan) -> bool:
    """Whether trees are the only ground motif (so there is room for backdrop hills)."""
    others = ("mountains", "city", "water", "dunes")
    return "trees" in plan.motifs and not any(m in plan.motifs for m in others)
