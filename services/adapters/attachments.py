"""Photos stored content-addressed on disk: the sha256 of the bytes is the name; size and type limited."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Magic numbers of the image types a phone app sends; anything else is refused whatever it claims to be.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"WEBP", 8, "image/webp"),
)


def sniff_image(data: bytes) -> str | None:
    """The media type the bytes really are (JPEG, PNG, WebP), or None."""
    for magic, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (media_type != "image/webp" or data[:4] == b"RIFF"):
            return media_type
    return None


@dataclass(frozen=True)
class StoredPhoto:
    """A photo on disk: its content address, type and size."""

    sha256: str
    media_type: str
    size: int


class PhotoTooLarge(ValueError):
    """The photo is larger than the configured limit."""


class NotAnImage(ValueError):
    """The bytes are not a JPEG, PNG or WebP image."""


class PhotoStore:
    """Writes each photo once under root/<first two hex>/<sha256>; the same bytes always get the same name."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path_for(self, sha256: str) -> Path:
        """Where a photo with this hash lives (it may not exist)."""
        if not SHA256.fullmatch(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> StoredPhoto:
        """Check and store the bytes; storing the same photo twice writes it once."""
        if len(data) > self.max_bytes:
            raise PhotoTooLarge(f"照片超过 {self.max_bytes} 字节")
        media_type = sniff_image(data)
        if media_type is None:
            raise NotAnImage("只接受 JPEG、PNG 或 WebP 照片")
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a photo and concurrent writers do not clash.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return StoredPhoto(sha256, media_type, len(data))

    def read(self, sha256: str) -> tuple[bytes, str] | None:
        """The bytes and media type of a stored photo, or None."""
        path = self.path_for(sha256)
        if not path.exists():
            return None
        data = path.read_bytes()
        return data, sniff_image(data) or "application/octet-stream"
