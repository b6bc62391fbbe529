"""Uploads on the API stack (accounts off): MB/s of a 4 MB PNG, and how fast a bomb is refused.

Throughput: `UPLOAD_CONNECTIONS` Python clients (threads, each with its own requests session
and keep-alive connection) post the 4 MB PNG of the media download (bench/prepare.py) to
`POST /api/v1/uploads` for a fixed time, round after round. The same bytes from the same
owner are one upload (the second costs almost nothing), so every upload is a different
file: the picture with a private ancillary chunk carrying a counter inserted before its
IEND. The chunk is dropped when the picture is stored, so each upload is really checked,
decoded, re-encoded and written. MB/s is the bytes of the files stored (answered 201) over
the round's wall time, from the first send to the last answer; any other answer is an
error. The round's uploads are deleted after it, outside the timing, so the disk does not
fill up over the rounds.

The bomb: a 1x1 PNG whose header claims `BOMB_SIDE` x `BOMB_SIDE` pixels, sent `BOMBS`
times one after the other, each timed from the send to the answer, which must be 422: the
size is read from the header and refused before any pixel is decoded.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from bench.harness import SETTLE_SECONDS, Bench, log, web_cpu
from bench.load import percentile
from tests.procs import API, Stack

UPLOAD_CONNECTIONS = 4  # as many as the media download's connections
COUNTER_CHUNK = b"bnCh"  # ancillary, private, safe to copy: readers skip it
BOMB_SIDE = 50_000  # 2.5 gigapixels claimed, against the default limit of 40 MP
BOMBS = 30
TIMEOUT = 30.0


def cost(bench: Bench) -> float:
    """About how many seconds the phase takes: a warm-up, the rounds, the bombs.

    A round lasts its duration, then the uploads under way finish (about a second on a
    2-core machine: each takes a few hundred ms of the web's CPU), then its uploads are
    deleted; a --quick run took 7 s in all, for one round.
    """
    per_round = SETTLE_SECONDS + duration(bench) + 1.5  # sync, last answers, deletions
    return 2 + bench.args.rounds * per_round + SETTLE_SECONDS + 2


def duration(bench: Bench) -> float:
    """Seconds of one round: as long as a media download run."""
    return max(2.0, float(bench.args.duration) - 1)


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_counter(png: bytes, n: int) -> bytes:
    """The PNG with a chunk carrying `n` before its IEND: the same picture, other bytes."""
    end = png.rindex(b"IEND") - 4  # the IEND chunk's length field
    return png[:end] + chunk(COUNTER_CHUNK, str(n).encode()) + png[end:]


def bomb(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` pixels (its CRC made right)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = buffer.getvalue()
    start = data.index(b"IHDR")
    header = struct.pack(">II", width, height) + data[start + 12 : start + 17]
    return data[: start - 4] + chunk(b"IHDR", header) + data[start + 21 :]


def multipart(data: bytes, name: str = "picture.png") -> tuple[bytes, str]:
    """A multipart body with `data` as its `file` field, and its Content-Type."""
    boundary = f"darkroom-bench-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def _post(session: requests.Session, url: str, data: bytes) -> tuple[float, int, str]:
    """Upload one file: milliseconds from send to answer, status (0: no answer), its body."""
    body, content_type = multipart(data)
    start = time.perf_counter()
    try:
        r = session.post(url, data=body, headers={"Content-Type": content_type}, timeout=TIMEOUT)
        status, text = r.status_code, r.text
    except requests.RequestException as exc:
        status, text = 0, type(exc).__name__
    return (time.perf_counter() - start) * 1000, status, text


def _client(
    url: str, png: bytes, numbers: Iterator[int], deadline: float, out: list[dict[str, Any]]
) -> None:
    """Upload distinct variants of `png` until the deadline, on one keep-alive connection."""
    with requests.Session() as session:
        while time.monotonic() < deadline:
            data = with_counter(png, next(numbers))
            took, status, text = _post(session, url, data)
            out.append({"ms": took, "status": status, "bytes": len(data), "body": text})


def summarise(samples: list[dict[str, Any]], wall: float, connections: int) -> dict[str, Any]:
    """One round's figures from its uploads (`ms`, `status`, `bytes`) and its wall time."""
    stored = [s for s in samples if s["status"] == 201]
    lat = [s["ms"] for s in samples]
    sent = sum(s["bytes"] for s in stored)
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(s["status"])] = statuses.get(str(s["status"]), 0) + 1
    return {
        "connections": connections,
        "duration_s": wall,
        "uploads": len(stored),
        "errors": len(samples) - len(stored),
        "statuses": statuses,
        "bytes": sent,
        "mb_per_s": sent / wall / 1e6 if wall else 0.0,
        "uploads_per_s": len(stored) / wall if wall else 0.0,
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "max_ms": max(lat, default=0.0),
    }


def upload_round(
    api: Stack, png: bytes, numbers: Iterator[int], connections: int, seconds: float
) -> tuple[dict[str, Any], list[str]]:
    """One timed round: its figures (with the web's CPU per upload) and the ids stored."""
    url = api.url(f"{API}/uploads")
    out: list[dict[str, Any]] = []
    before = web_cpu(api)
    start = time.perf_counter()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(url, png, numbers, deadline, out))
        for _ in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + TIMEOUT + 10)
    wall = time.perf_counter() - start
    spent = web_cpu(api) - before
    found = summarise(out, wall, connections)
    found["server_cpu_ms"] = 1000 * spent / found["uploads"] if found["uploads"] else None
    bad = [s for s in out if s["status"] != 201]
    if bad:
        found["first_error"] = f"{bad[0]['status']}: {bad[0]['body'][:300]}"
    ids = [_id(s["body"]) for s in out if s["status"] == 201]
    return found, [i for i in ids if i]


def _id(body: str) -> str | None:
    """The `id` of a 201's JSON body."""
    try:
        return str(json.loads(body)["id"])
    except (ValueError, KeyError, TypeError):
        return None


def remove(api: Stack, ids: list[str]) -> int:
    """Delete uploads (after a round, untimed); how many were not deleted."""
    return sum(1 for i in ids if api.delete(f"{API}/uploads/{i}").status_code != 204)


def refuse_bombs(api: Stack, count: int = BOMBS) -> dict[str, Any]:
    """`count` bombs one after the other on one connection: each answer's status and time."""
    url = api.url(f"{API}/uploads")
    took: list[float] = []
    statuses: dict[str, int] = {}
    named = 0
    with requests.Session() as session:
        for n in range(count):
            ms, status, text = _post(session, url, with_counter(bomb(), n))
            took.append(ms)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            named += '"image_too_large"' in text
    return {
        "claims": [BOMB_SIDE, BOMB_SIDE],
        "bytes": len(bomb()),
        "count": count,
        "refused": statuses.get("422", 0),
        "named_too_large": named,
        "statuses": statuses,
        "ms": took,
        "p50_ms": percentile(took, 50),
        "p95_ms": percentile(took, 95),
        "max_ms": max(took, default=0.0),
    }


def settle() -> None:
    """Quiet before a timed part, as before every load run (Bench.load)."""
    os.sync()
    time.sleep(SETTLE_SECONDS)


def measure(bench: Bench, api: Stack, picture: Path) -> None:
    """Upload throughput of the media download's picture in rounds, then the bomb."""
    png = picture.read_bytes()
    numbers = itertools.count(1)  # shared by every client of every round: no file twice
    _, ids = upload_round(api, png, numbers, UPLOAD_CONNECTIONS, 1)  # warm-up, not recorded
    remove(api, ids)
    runs: list[dict[str, Any]] = []
    for rnd in range(bench.args.rounds):
        settle()
        found, ids = upload_round(api, png, numbers, UPLOAD_CONNECTIONS, duration(bench))
        found["not_deleted"] = remove(api, ids)
        runs.append(found)
        log(
            f"round {rnd + 1} uploads: {found['mb_per_s']:.1f} MB/s, "
            f"{found['uploads_per_s']:.1f} uploads/s, p50 {found['p50_ms']:.0f} ms, "
            f"errors {found['errors']}"
        )
    settle()
    bombs = refuse_bombs(api)
    bench.results["uploads"] = {"size_bytes": len(png), "runs": runs, "bomb": bombs}
    log(
        f"bombs: {bombs['refused']} of {bombs['count']} refused with 422, p50 "
        f"{bombs['p50_ms']:.1f} ms, p95 {bombs['p95_ms']:.1f} ms, max {bombs['max_ms']:.1f} ms"
    )
