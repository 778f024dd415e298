"""A test-only WeCom callback encoder, written from WeCom's sample `WXBizMsgCrypt`.

Independent of ingest's implementation on purpose: the sample's own steps
(random 16 bytes, network-order length, message, receive id; PKCS#7 padding
to 32-byte blocks done by hand; AES-256-CBC with IV = key[:16]; SHA-1 over the
sorted token, timestamp, nonce and ciphertext), so a test fails if ingest
drifts from what WeCom sends.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import struct
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "webhooks"
FIXTURE_EXTERNAL_USER = "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"


def event_xml(
    change_type: str, created: int | None = None, *, external_user: str | None = None
) -> bytes:
    """The documented change_external_contact event, for `change_type` at `created`."""
    text = (FIXTURE / "wecom_add_external_contact.xml").read_text()
    when = str(int(time.time()) - 2 if created is None else created)
    text = text.replace("{create_time}", when).replace("{change_type}", change_type)
    if external_user is not None:
        text = text.replace(FIXTURE_EXTERNAL_USER, external_user)
    return text.encode()


class SampleMsgCrypt:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.key = base64.b64decode(encoding_aes_key + "=")
        assert len(self.key) == 32
        self.receive_id = receive_id

    def _pad(self, text: bytes) -> bytes:
        amount = BLOCK_SIZE - (len(text) % BLOCK_SIZE)
        return text + bytes([amount]) * amount

    def encrypt(self, message: bytes, *, receive_id: str | None = None) -> str:
        rid = (self.receive_id if receive_id is None else receive_id).encode()
        text = os.urandom(16) + struct.pack("I", socket.htonl(len(message))) + message + rid
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(encryptor.update(self._pad(text)) + encryptor.finalize()).decode()

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        items = [self.token, timestamp, nonce, encrypt]
        items.sort()
        return hashlib.sha1("".join(items).encode()).hexdigest()

    def encrypt_msg(
        self, reply: bytes, nonce: str, timestamp: str, *, receive_id: str | None = None
    ) -> tuple[str, str]:
        """(ciphertext, msg_signature) as WeCom's server computes them."""
        encrypt = self.encrypt(reply, receive_id=receive_id)
        return encrypt, self.signature(timestamp, nonce, encrypt)

    def callback_body(self, encrypt: str) -> bytes:
        """The POST body WeCom sends: the corp id and the ciphertext."""
        return (
            f"<xml><ToUserName><![CDATA[{self.receive_id}]]></ToUserName>"
            f"<AgentID><![CDATA[1000002]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ).encode()

    def signed_callback(
        self, message: bytes, *, timestamp: int | None = None, receive_id: str | None = None
    ) -> tuple[str, bytes]:
        """(query string, body) of a POST to the callback URL carrying `message`."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(5)
        encrypt, signature = self.encrypt_msg(message, nonce, ts, receive_id=receive_id)
        return f"msg_signature={signature}&timestamp={ts}&nonce={nonce}", self.callback_body(
            encrypt
        )
