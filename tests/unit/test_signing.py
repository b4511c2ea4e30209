"""Webhook signatures: X-Wandb-Signature as openssl computes it, Standard Webhooks, receiver checks, headers.

The signatures and checks live once, in the engineers' client (``registry_client.webhooks``); the server's delivery
headers are built from them (``automations.signing``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess

import pytest
from registry_client.webhooks import (
    WebhookVerificationError,
    standard_key,
    standard_signature,
    verify,
    verify_standard,
    verify_wandb,
    wandb_signature,
)

from automations import signing
from automations.signing import signature_headers

SECRET = "s3cr3t with spaces, ünïcode & $ymbols"
BODY = '{"event_author":"a\\"b","note":"naïve ✓ 模型\\nline two","n":1}\n\n'.encode()
MSG_ID = "3f0c2b8e-4f1a-4c5e-9d7a-2b1e6f0a9c11"
TIMESTAMP = 1_718_000_000

# The Standard Webhooks specification's published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def openssl_signature(secret: str, body: bytes) -> str:
    """What the troubleshooting script prints: openssl dgst -sha256 -hmac "$SECRET" -binary | base64."""
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"], input=body, capture_output=True, check=True
    ).stdout
    return subprocess.run(["base64"], input=digest, capture_output=True, check=True).stdout.decode().strip()


# --- X-Wandb-Signature ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("secret", [SECRET, "your_api_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
def test_wandb_signature_is_byte_for_byte_what_openssl_prints(secret):
    assert wandb_signature(secret, BODY) == openssl_signature(secret, BODY)


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_wandb_signature_of_the_troubleshooting_script_payload_matches_openssl():
    body = b'{"key1": "value1", "key2": "value2"}'

    assert wandb_signature("your_api_secret", body) == openssl_signature("your_api_secret", body)


# --- Standard Webhooks --------------------------------------------------------------------------------------


def test_standard_signature_reproduces_the_specification_vector():
    assert standard_signature(SPEC_SECRET, msg_id=SPEC_MSG_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY) == (
        SPEC_SIGNATURE
    )


def test_standard_signature_signs_id_timestamp_and_body_with_the_decoded_whsec_key():
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    signed = f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()

    assert standard_signature(SPEC_SECRET, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY) == expected


def test_a_plain_secret_signs_with_its_utf8_bytes():
    signed = f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY
    expected = "v1," + base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()

    assert standard_signature(SECRET, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY) == expected


def test_a_whsec_secret_that_is_not_base64_is_used_whole():
    assert standard_key("whsec_not base64!") == b"whsec_not base64!"
    assert standard_key("whsec_") == b"whsec_"
    assert standard_key(SPEC_SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_a_whsec_secret_without_its_base64_padding_is_decoded_as_the_official_libraries_do():
    padded = "whsec_" + base64.b64encode(b"sixteen-byte-key").decode()  # ends in "=="
    assert padded.endswith("==")

    assert standard_key(padded.rstrip("=")) == standard_key(padded) == b"sixteen-byte-key"


def test_the_server_signs_with_the_clients_functions():
    assert signing.wandb_signature is wandb_signature
    assert signing.standard_signature is standard_signature


# --- Receivers ----------------------------------------------------------------------------------------------


def refused(check, *args, **kwargs) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_verify_wandb_accepts_the_signature_and_refuses_tampering_with_a_reason():
    header = wandb_signature(SECRET, BODY)

    verify_wandb(SECRET, BODY, header)
    verify_wandb(SECRET, BODY, f" {header} ")
    assert "does not match the body" in refused(verify_wandb, SECRET, BODY + b" ", header)
    assert "does not match the body" in refused(verify_wandb, "another secret", BODY, header)
    assert "no X-Wandb-Signature" in refused(verify_wandb, SECRET, BODY, None)
    assert "no X-Wandb-Signature" in refused(verify_wandb, SECRET, BODY, "")
    assert "No signing secret" in refused(verify_wandb, "", BODY, header)


def test_verify_standard_accepts_the_specification_vector_when_fresh():
    verify_standard(
        SPEC_SECRET,
        SPEC_BODY,
        msg_id=SPEC_MSG_ID,
        timestamp=str(SPEC_TIMESTAMP),
        signature=SPEC_SIGNATURE,
        now=SPEC_TIMESTAMP + 10,
    )


def standard(*, secret=SECRET, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY, signature=None, now=TIMESTAMP, **kw):
    if signature is None:
        signature = standard_signature(SECRET, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY)
    verify_standard(secret, body, msg_id=msg_id, timestamp=timestamp, signature=signature, now=now, **kw)


def test_verify_standard_accepts_a_good_signature_within_five_minutes_either_way():
    standard()
    standard(now=TIMESTAMP + 299)
    standard(now=TIMESTAMP - 299)


def test_verify_standard_refuses_tampering_a_wrong_secret_and_another_id():
    assert "does not match" in refused(standard, body=BODY.replace(b"1", b"2"))
    assert "does not match" in refused(standard, secret="another secret")
    assert "does not match" in refused(standard, msg_id="another-delivery")
    assert "does not match" in refused(standard, signature="v1,bm90IGEgc2lnbmF0dXJl")
    assert "no v1 signature" in refused(standard, signature="garbage")


def test_verify_standard_refuses_a_stale_or_future_timestamp_naming_the_tolerance():
    stale = refused(standard, now=TIMESTAMP + 301)
    assert "301 s behind" in stale and "tolerance of 300 s" in stale
    assert "301 s ahead of" in refused(standard, now=TIMESTAMP - 301)
    assert "not unix seconds" in refused(standard, timestamp="yesterday")
    # A receiver may choose its own tolerance.
    standard(now=TIMESTAMP + 3000, tolerance=3600)
    assert "tolerance of 10 s" in refused(standard, now=TIMESTAMP + 11, tolerance=10)


def test_verify_standard_names_the_missing_headers():
    assert "no webhook-id, webhook-signature header" in refused(standard, msg_id="", signature="")
    assert "no webhook-timestamp header" in refused(standard, timestamp=None)


def test_verify_standard_accepts_one_matching_signature_among_several():
    good = standard_signature(SECRET, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY)
    rotated = standard_signature("old secret", msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY)

    standard(signature=f"{rotated} v1a,ignored-other-scheme {good}")
    assert "does not match" in refused(standard, signature=f"{rotated} v2,{good.removeprefix('v1,')}")


def test_verify_checks_every_signature_a_delivery_carries_in_any_header_case():
    sent = signature_headers(
        secret=SECRET, access_token=None, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY, user_agent="ua"
    )
    verify(SECRET, BODY, sent, now=TIMESTAMP)
    verify(SECRET, BODY, {k.upper(): v for k, v in sent.items()}, now=TIMESTAMP)

    # Either signature failing fails the request, even when the other holds.
    assert "X-Wandb-Signature does not match" in refused(
        verify, SECRET, BODY, {**sent, "X-Wandb-Signature": wandb_signature("other", BODY)}, now=TIMESTAMP
    )
    assert "webhook-signature does not match" in refused(
        verify, SECRET, BODY, {**sent, "webhook-id": "replayed-under-another-id"}, now=TIMESTAMP
    )
    assert "tolerance" in refused(verify, SECRET, BODY, sent, now=TIMESTAMP + 3600)
    # Only one scheme present: that one is checked; none at all is refused.
    legacy = {"X-Wandb-Signature": sent["X-Wandb-Signature"]}
    verify(SECRET, BODY, legacy)
    assert "carries no signature" in refused(verify, SECRET, BODY, {"Content-Type": "application/json"})


# --- Headers ------------------------------------------------------------------------------------------------


def headers(**overrides):
    arguments = {
        "secret": SECRET,
        "access_token": "ghp_token",
        "msg_id": MSG_ID,
        "timestamp": TIMESTAMP,
        "body": BODY,
        "user_agent": "registry-automations-webhooks/0.1",
    }
    return signature_headers(**(arguments | overrides))


def test_headers_carry_content_type_user_agent_id_timestamp_signatures_and_bearer():
    assert headers() == {
        "Content-Type": "application/json",
        "User-Agent": "registry-automations-webhooks/0.1",
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "X-Wandb-Signature": wandb_signature(SECRET, BODY),
        "webhook-signature": standard_signature(SECRET, msg_id=MSG_ID, timestamp=TIMESTAMP, body=BODY),
        "Authorization": "Bearer ghp_token",
    }


def test_the_bearer_header_is_sent_only_with_an_access_token():
    assert "Authorization" not in headers(access_token=None)
    assert "Authorization" not in headers(access_token="")


def test_signatures_are_sent_only_with_a_secret():
    unsigned = headers(secret=None, access_token=None)

    assert "X-Wandb-Signature" not in unsigned
    assert "webhook-signature" not in unsigned
    assert unsigned["webhook-id"] == MSG_ID
    assert unsigned["webhook-timestamp"] == str(TIMESTAMP)
