"""Thumbnail of a 2048x2048 picture: Darkroom's `make_thumbnail` vs Pillow's plain one.

Run as `python -m bench.thumbs ITERATIONS` with DARKROOM_INSTANCE_PATH pointing at a
scratch folder (importing webapp builds the queue object there); prints one JSON line.
The picture is the demo model's own drawing at 2048x2048. Variants run interleaved.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable

from bench.load import percentile


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    from PIL import Image, features

    from webapp.media import THUMBNAIL_SIDE, make_thumbnail
    from webapp.providers.demo_art import render_image

    side = THUMBNAIL_SIDE
    started = time.perf_counter()
    image = render_image("a lighthouse on a cliff above a stormy sea at sunset", 42, 2048, 2048)
    render_ms = (time.perf_counter() - started) * 1000

    def plain() -> None:
        thumb = image.copy()
        thumb.thumbnail((side, side))

    def plain_webp() -> None:
        thumb = image.copy()
        thumb.thumbnail((side, side))
        thumb.save(io.BytesIO(), "WEBP")

    def darkroom_resize() -> None:
        thumb = image.copy()
        thumb.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)

    def darkroom() -> None:
        make_thumbnail(image)

    variants: dict[str, Callable[[], None]] = {
        "pillow_thumbnail": plain,
        "pillow_thumbnail_webp": plain_webp,
        "darkroom_resize": darkroom_resize,
        "darkroom_make_thumbnail": darkroom,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(iterations):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    out = {
        "iterations": iterations,
        "render_ms": render_ms,
        "size": list(image.size),
        "thumb_bytes": len(make_thumbnail(image)),
        "webp": bool(features.check("webp")),
        "ms": {
            name: {
                "median": percentile(v, 50),
                "p95": percentile(v, 95),
                "min": min(v),
                "samples": v,
            }
            for name, v in times.items()
        },
    }
    print("BENCHJSON " + json.dumps(out))


if __name__ == "__main__":
    main()
