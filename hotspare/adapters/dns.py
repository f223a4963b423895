"""DNS adapter (dnspython): read from one authoritative server, update with TSIG and CAS.

Never uses the system resolver. Every answer the server can give maps to an explicit result or
a distinct error: wrong secret, unknown key, refused, prerequisite failed, timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update

from hotspare.adapters.errors import DnsPrerequisiteFailed, PermanentError, TransientError

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class AuthoritativeServer:
    """The zone's primary server: queries and updates go here and nowhere else."""

    zone: str
    address: str
    port: int = 53
    timeout: float = 5.0

    @property
    def label(self) -> str:
        return f"{self.address}:{self.port} (zone {self.zone})"


def read_addresses(server: AuthoritativeServer, name: str) -> list[str]:
    """The A record of ``name`` as the authoritative server answers it now (sorted; [] if none)."""
    rrset = _query_a(server, name)
    return sorted(rdata.address for rdata in rrset) if rrset else []


def read_ttl(server: AuthoritativeServer, name: str) -> int | None:
    """TTL of the A record of ``name``, None when there is none."""
    rrset = _query_a(server, name)
    return rrset.ttl if rrset else None


def _query_a(server: AuthoritativeServer, name: str) -> dns.rrset.RRset | None:
    return _query(server, name, dns.rdatatype.A)


def _query(server: AuthoritativeServer, name: str, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
    """The answer's rrset of ``rdtype`` for ``name`` (over TCP), None when there is none."""
    query = dns.message.make_query(_absolute(name), rdtype)
    try:
        response = dns.query.tcp(query, server.address, port=server.port, timeout=server.timeout)
    except dns.exception.Timeout:
        raise TransientError(f"DNS server {server.label} did not answer within {server.timeout:g} s") from None
    except OSError as error:
        raise TransientError(f"cannot reach DNS server {server.label}: {error.strerror or error}") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        kind = "" if rdtype == dns.rdatatype.A else f" {dns.rdatatype.to_text(rdtype)}"
        raise TransientError(f"DNS server {server.label} answered {dns.rcode.to_text(rcode)} for {name}{kind}")
    return next((rrset for rrset in response.answer if rrset.rdtype == rdtype), None)


def compare_and_swap_address(
    server: AuthoritativeServer,
    key: TsigKey,
    name: str,
    expected: str,
    new: str,
    ttl: int,
) -> None:
    """Point ``name`` at ``new`` only if it still points at exactly ``expected``.

    One signed RFC 2136 message: prerequisite "A ``expected`` exists", then an atomic replace.
    Of two racing callers exactly one succeeds; the other gets DnsPrerequisiteFailed.
    """
    update = _signed_update(server, key)
    relative = _relative(name, server.zone)
    update.present(relative, "A", expected)
    update.replace(relative, ttl, "A", new)
    _send(server, key, update, f"move {name} from {expected} to {new}")


def set_ttl(server: AuthoritativeServer, key: TsigKey, name: str, address: str, ttl: int) -> None:
    """Rewrite ``name`` A ``address`` with a new TTL, only if it still holds that address."""
    update = _signed_update(server, key)
    relative = _relative(name, server.zone)
    update.present(relative, "A", address)
    update.replace(relative, ttl, "A", address)
    _send(server, key, update, f"set the TTL of {name} to {ttl}")


def read_txt(server: AuthoritativeServer, name: str) -> list[list[str]]:
    """Every TXT record of ``name`` (each as its list of strings); [] when there is none."""
    rrset = _query(server, name, dns.rdatatype.TXT)
    return [[part.decode(errors="replace") for part in rdata.strings] for rdata in rrset] if rrset else []


def compare_and_swap_txt(
    server: AuthoritativeServer, key: TsigKey, name: str, expected: list[str] | None, new: list[str], ttl: int, what: str
) -> None:
    """Replace the TXT record of ``name`` by ``new`` only if it still is exactly ``expected``
    (``None``: only if ``name`` has no TXT record at all). One signed message, like
    ``compare_and_swap_address``: of two racing callers exactly one succeeds."""
    update = _signed_update(server, key)
    relative = _relative(name, server.zone)
    if expected is None:
        update.absent(relative, "TXT")
    else:
        update.present(relative, "TXT", _txt_text(expected))
    update.replace(relative, ttl, "TXT", _txt_text(new))
    _send(server, key, update, what)


def _txt_text(strings: list[str]) -> str:
    """TXT rdata in zone-file text: each string quoted (callers pass no quotes or backslashes)."""
    if any('"' in part or "\\" in part for part in strings):
        raise PermanentError("a TXT string with a quote or backslash cannot be written")
    return " ".join(f'"{part}"' for part in strings)


def _signed_update(server: AuthoritativeServer, key: TsigKey) -> dns.update.UpdateMessage:
    algorithm = ALGORITHMS.get(key.algorithm.lower())
    if algorithm is None:
        raise PermanentError(f"TSIG algorithm {key.algorithm!r} is not supported (use one of {', '.join(ALGORITHMS)})")
    try:
        keyring = dns.tsigkeyring.from_text({key.name: key.secret})
    except Exception:
        raise PermanentError(f"the secret of TSIG key {key.name!r} is not valid base64") from None
    return dns.update.UpdateMessage(
        _absolute(server.zone), keyring=keyring, keyname=dns.name.from_text(key.name), keyalgorithm=algorithm
    )


def _send(server: AuthoritativeServer, key: TsigKey, update: dns.update.UpdateMessage, what: str) -> None:
    try:
        response = dns.query.tcp(update, server.address, port=server.port, timeout=server.timeout)
    except dns.tsig.PeerBadSignature:
        raise PermanentError(
            f"DNS server {server.label} rejected the signature of key {key.name!r} (BADSIG: wrong secret); "
            "nothing was changed. Fix the DnsUpdateKey block."
        ) from None
    except dns.tsig.PeerBadKey:
        raise PermanentError(
            f"DNS server {server.label} does not know key {key.name!r} (BADKEY: wrong name or algorithm); nothing was changed."
        ) from None
    except dns.tsig.PeerError as error:
        raise PermanentError(f"DNS server {server.label} rejected the TSIG signature ({error}); nothing changed") from None
    except dns.exception.Timeout:
        raise TransientError(
            f"DNS server {server.label} did not answer the update ({what}) within {server.timeout:g} s"
        ) from None
    except OSError as error:
        raise TransientError(f"cannot reach DNS server {server.label} to {what}: {error.strerror or error}") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NOERROR:
        return
    if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
        raise DnsPrerequisiteFailed(
            f"could not {what}: the record no longer holds the expected value "
            f"({dns.rcode.to_text(rcode)}); another change got there first. Nothing was changed."
        )
    if rcode == dns.rcode.REFUSED:
        raise PermanentError(
            f"DNS server {server.label} REFUSED the update ({what}): key {key.name!r} is not allowed to update "
            "this zone, or the zone is wrong. Nothing was changed."
        )
    if rcode == dns.rcode.NOTAUTH:
        raise PermanentError(f"DNS server {server.label} is not authoritative for {server.zone} (NOTAUTH)")
    raise TransientError(f"DNS server {server.label} answered {dns.rcode.to_text(rcode)} to the update ({what})")


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name if name.endswith(".") else name + ".")


def _relative(name: str, zone: str) -> dns.name.Name:
    return _absolute(name).relativize(_absolute(zone))
