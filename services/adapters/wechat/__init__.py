"""The WeChat Official Account (微信公众号) server callback as an inbound channel.

`protocol.py` (signatures, freshness, XML in and out), `crypto.py` (safe mode, EncodingAESKey) and
`conversation.py` (what a message is, follow-ups, reply texts) are pure; `router.py` does the I/O.
"""
