"""The request headers a source authenticates with, declared once for every route that takes them."""

from typing import Annotated

from fastapi import Header

ApiKeyHeader = Annotated[str | None, Header(description="The channel's API key.")]
TimestampHeader = Annotated[str | None, Header(description="Unix seconds, with X-Signature.")]
SignatureHeader = Annotated[
    str | None, Header(description='Instead of a key: "sha256=" + hex HMAC-SHA256 of "X-Timestamp." + body.')
]
