"""Client of the control site's certificate issuer (``hotspare/issuer``): one HTTP request per
certificate.

    POST {url}/certificate   Authorization: Bearer <site token>
    {"flow_run_id": "...", "public_key": "ssh-ed25519 AAAA..."}
    200 {"certificate": "ssh-ed25519-cert-v01@openssh.com ...", "principals": [...],
         "valid_seconds": 600, "key_id": "run-..."}
    4xx {"error": "why not, in one sentence"}

A refusal (4xx) is permanent: the same run asks again in vain. A timeout, a refused connection
or a 5xx is transient (the control site may be restarting). The token never appears in a
message.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotspare.adapters.errors import PermanentError, TransientError

REQUEST_SECONDS = 15.0


class CertificateRefused(PermanentError):
    """The issuer answered, and said no (unknown run, not running, not approved, wrong site)."""


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: str
    principals: tuple[str, ...]
    valid_seconds: float
    key_id: str


def request_certificate(
    url: str, token: str, flow_run_id: str, public_key: str, timeout: float = REQUEST_SECONDS
) -> IssuedCertificate:
    """A certificate for ``public_key`` for the run ``flow_run_id``, from the issuer at ``url``."""
    import httpx

    where = f"the certificate issuer at {url}"
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/certificate",
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            json={"flow_run_id": flow_run_id, "public_key": public_key},
        )
    except httpx.TimeoutException:
        raise TransientError(f"{where} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as error:
        raise TransientError(f"cannot reach {where}: {error}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500 or not isinstance(body, dict):
        raise TransientError(f"{where} failed (HTTP {response.status_code}): {str(body)[:300]}")
    if response.status_code != 200:
        reason = body.get("error") or f"HTTP {response.status_code}"
        raise CertificateRefused(f"{where} refused a certificate for run {flow_run_id}: {reason}")
    try:
        return IssuedCertificate(
            str(body["certificate"]), tuple(body["principals"]), float(body["valid_seconds"]), str(body["key_id"])
        )
    except (KeyError, TypeError, ValueError):
        raise PermanentError(f"{where} answered without a certificate: {str(body)[:300]}") from None
