"""The event webhook's signing key, as SendGrid uses it.

SendGrid's signed Event Webhook: ECDSA P-256 / SHA-256 over
``timestamp + raw body bytes``, the signature base64 DER in
``X-Twilio-Email-Event-Webhook-Signature``. The public key is shown as base64
DER (SubjectPublicKeyInfo), the form ``EventWebhook.convert_public_key_to_ecdsa``
takes.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookSigner:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the event webhook key must be ECDSA P-256 (secp256r1)")
        self.private_key = private_key

    @classmethod
    def generate(cls) -> WebhookSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> WebhookSigner:
        """Load a PEM private key, or create one there so the public key survives restarts."""
        pem_path = Path(path)
        if pem_path.exists():
            key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{pem_path} holds no EC private key; expected ECDSA P-256")
            return cls(key)
        signer = cls.generate()
        pem_path.touch(mode=0o600)
        pem_path.write_bytes(signer.private_pem())
        return signer

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key_b64(self) -> str:
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        signature = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def headers(self, timestamp: int, body: bytes) -> dict[str, str]:
        stamp = str(timestamp)
        return {SIGNATURE_HEADER: self.sign(stamp, body), TIMESTAMP_HEADER: stamp}
