"""ComfyUI's websocket (`/ws?clientId=`): what the server tells the client that queued a
prompt while it runs.

JSON messages (`{"type", "data"}`): `status` (the queue's length), `execution_start`,
`execution_cached`, `executing` (a node starts; `node: null` once the prompt is done and its
history written), `progress` (`value` of `max` steps of a sampler), `executed` (a node's
outputs), `execution_success`, `execution_error`, `execution_interrupted`. Binary frames are
previews: a 4-byte big-endian event type (1: a picture, 4: a picture with JSON metadata),
then for 1 the picture's type (1 JPEG, 2 PNG) in 4 bytes and the picture; for 4 the
metadata's length in 4 bytes, the metadata (with `prompt_id`) and the picture.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import websocket

from webapp.providers.comfyui.client import ComfyUIClient

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # the longest a read waits, so a cancel is noticed within about this
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Dropped(Exception):
    """The websocket closed or broke."""


@dataclass(frozen=True)
class Message:
    """A JSON message about a prompt (`prompt_id` None for server-wide ones)."""

    type: str
    data: dict[str, Any]

    @property
    def prompt_id(self) -> str | None:
        value = self.data.get("prompt_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Preview:
    """A preview picture's bytes (`prompt_id` when the server said whose it is)."""

    data: bytes
    prompt_id: str | None


def parse_binary(frame: bytes) -> Preview | None:
    """A preview from a binary frame; None for other kinds of frame."""
    if len(frame) < 8:
        return None
    event = int.from_bytes(frame[:4], "big")
    if event == PREVIEW_IMAGE:
        return Preview(frame[8:], None)
    if event == PREVIEW_IMAGE_WITH_METADATA:
        size = int.from_bytes(frame[4:8], "big")
        try:
            metadata = json.loads(frame[8 : 8 + size])
        except ValueError:
            return None
        prompt_id = metadata.get("prompt_id") if isinstance(metadata, dict) else None
        return Preview(frame[8 + size :], prompt_id if isinstance(prompt_id, str) else None)
    return None


def parse_text(text: str) -> Message | None:
    """A message from a text frame; None for one that is not `{"type", "data"}`."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    data = message.get("data")
    return Message(message["type"], data if isinstance(data, dict) else {})


class Listener:
    """The websocket of one client id on one server."""

    def __init__(self, client: ComfyUIClient, client_id: str) -> None:
        self.client, self.client_id = client, client_id
        self.socket: websocket.WebSocket | None = None

    @property
    def connected(self) -> bool:
        return self.socket is not None

    def open(self) -> bool:
        """Connect (again); False when the server offers no websocket here (a proxy that
        does not pass it on, say) or does not answer: the history is read instead."""
        self.close()
        try:
            sock = websocket.create_connection(
                self.client.websocket_url(self.client_id),
                timeout=self.client.settings.connect_timeout,
                header=self.client.websocket_headers(),
                enable_multithread=False,
                skip_utf8_validation=True,
            )
        except (websocket.WebSocketException, OSError) as exc:
            log.info(
                "no websocket on %s (%s); following the history instead",
                self.client.backend.name,
                type(exc).__name__,
            )
            return False
        sock.settimeout(TICK_SECONDS)
        self.socket = sock
        return True

    def receive(self) -> Message | Preview | None:
        """The next message or preview; None when none came within a tick (or the frame
        was of no interest). `Dropped` when the connection closed."""
        if self.socket is None:
            raise Dropped
        try:
            frame = self.socket.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as exc:
            self.close()
            raise Dropped from exc
        if isinstance(frame, bytes):
            return parse_binary(frame) if len(frame) <= MAX_MESSAGE_BYTES else None
        if not frame:  # a close frame reads as ""
            self.close()
            raise Dropped
        return parse_text(frame)

    def close(self) -> None:
        if self.socket is not None:
            sock, self.socket = self.socket, None
            with contextlib.suppress(websocket.WebSocketException, OSError):
                sock.close(timeout=0.1)
