"""Safe mode (安全模式) of the WeChat callback: AES-256-CBC with the EncodingAESKey; pure."""

from __future__ import annotations

import base64
import binascii
import hmac
import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads (PKCS#7) to 32-byte blocks, not AES's 16
RANDOM_BYTES = 16
AES_KEY_PATTERN = re.compile(r"^[A-Za-z0-9]{43}$")


class DecryptError(Exception):
    """The Encrypt field cannot be decrypted into a message (bad base64, length, padding or layout)."""


class AppIdMismatch(Exception):
    """The message decrypted, but was encrypted for another official account."""


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey; ValueError when it is not one."""
    if not AES_KEY_PATTERN.fullmatch(encoding_aes_key):
        raise ValueError("EncodingAESKey must be 43 characters of A-Z, a-z, 0-9")
    return base64.b64decode(encoding_aes_key + "=")


class MessageCrypto:
    """Encrypts replies and decrypts messages of one official account (its EncodingAESKey and AppID)."""

    def __init__(self, encoding_aes_key: str, app_id: str) -> None:
        self._key = aes_key(encoding_aes_key)
        self._app_id = app_id.encode()

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, xml: str, random16: bytes) -> str:
        """Base64 ciphertext of 16 random bytes + 4-byte big-endian length + xml + AppID, PKCS#7 to 32 bytes."""
        if len(random16) != RANDOM_BYTES:
            raise ValueError(f"need {RANDOM_BYTES} random bytes, got {len(random16)}")
        text = xml.encode()
        plain = random16 + len(text).to_bytes(4, "big") + text + self._app_id
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher().encryptor()
        cipher = encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(cipher).decode("ascii")

    def decrypt(self, encrypt: str) -> str:
        """The XML inside an Encrypt field; DecryptError when it is not one, AppIdMismatch for another account."""
        try:
            cipher = base64.b64decode(encrypt.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise DecryptError("Encrypt 不是有效的 base64。") from None
        if len(cipher) < 2 * 16 or len(cipher) % 16:
            raise DecryptError("Encrypt 长度不是 AES 块长的整数倍。")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(cipher) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise DecryptError("解密后填充无效（EncodingAESKey 可能不一致）。")
        content = plain[RANDOM_BYTES:-pad]
        if len(content) < 4:
            raise DecryptError("解密后内容过短。")
        length = int.from_bytes(content[:4], "big")
        if length > len(content) - 4:
            raise DecryptError("解密后消息长度字段超出内容。")
        try:
            xml = content[4 : 4 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptError("解密后消息不是 UTF-8。") from None
        if not hmac.compare_digest(content[4 + length :], self._app_id):
            raise AppIdMismatch("消息的 AppID 与本公众号不符。")
        return xml
