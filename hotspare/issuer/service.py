"""The issuer's configuration, its answer to one request, and its HTTP endpoint.

    python -m hotspare.issuer.service --config FILE --listen ADDRESS:PORT

runs at the control site (the lab starts it in the control site's network, ``lab/workers.py``).
The configuration (JSON, 0600, the control site's only) names the CA's private key and each site
that may ask: the SHA-256 of its token, its addresses (the certificate's ``source-address``)
and the work pools its workers poll::

    {"ca_key": "/path/ssh_ca",
     "sites": [{"site": "east", "token_sha256": "…", "addresses": ["10.211.78.21"],
                "pools": ["hotspare-east"], "control": false}, …],
     "trusted_proxies": []}

A request is answered only when its token names a site and it comes from one of that site's
addresses (or from a ``trusted_proxies`` address, which then names the client in the last
``X-Forwarded-For`` entry). Every answer is logged as a sentence naming the site and the run,
never the token.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hotspare.adapters.errors import HotspareError, PermanentError
from hotspare.adapters.ssh_ca import BadPublicKey, Signing, sign
from hotspare.planning.certificates import CLOCK_SKEW_MINUTES, RUN_ID, CertificatePlan, Requester, plan_certificate

log = logging.getLogger("hotspare.issuer")
MAX_REQUEST_BYTES = 16384


@dataclass(frozen=True)
class Site:
    requester: Requester
    token_sha256: str


@dataclass(frozen=True)
class IssuerConfig:
    ca_key: Path
    sites: tuple[Site, ...]
    trusted_proxies: tuple[str, ...] = ()

    def site_of(self, token: str) -> Site | None:
        """The site whose token this is (constant-time comparisons, every site compared)."""
        digest = token_digest(token)
        found = None
        for site in self.sites:
            if hmac.compare_digest(digest, site.token_sha256):
                found = site
        return found


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A site's token: 32 bytes from the system's cryptographic random."""
    return secrets.token_urlsafe(32)


def read_config(path: Path) -> IssuerConfig:
    """The configuration file, or a one-line PermanentError naming it and what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
        sites = tuple(
            Site(
                Requester(entry["site"], tuple(entry["addresses"]), tuple(entry["pools"]), bool(entry.get("control", False))),
                entry["token_sha256"],
            )
            for entry in data["sites"]
        )
        return IssuerConfig(Path(data["ca_key"]), sites, tuple(data.get("trusted_proxies", ())))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PermanentError(
            f"issuer configuration {path}: unreadable or incomplete ({error}); it needs ca_key and "
            "sites (site, token_sha256, addresses, pools)"
        ) from None


def config_json(ca_key: Path, sites: list[tuple[Requester, str]], trusted_proxies: tuple[str, ...] = ()) -> str:
    """The configuration text for these sites (each with its token; only the token's hash is kept)."""
    return (
        json.dumps(
            {
                "ca_key": str(ca_key),
                "trusted_proxies": list(trusted_proxies),
                "sites": [
                    {
                        "site": requester.site,
                        "token_sha256": token_digest(token),
                        "addresses": list(requester.addresses),
                        "pools": list(requester.pools),
                        "control": requester.control,
                    }
                    for requester, token in sites
                ],
            },
            indent=2,
        )
        + "\n"
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


class Issuer:
    """One request in, one answer out: who asks, for which run, decided by the planner, signed."""

    def __init__(self, config: IssuerConfig, run_facts=None, fleet_layout=None):
        from hotspare.issuer import facts

        self.config = config
        self._run_facts = run_facts or facts.run_facts
        self._fleet_layout = fleet_layout or facts.fleet_layout

    def answer(self, token: str, peer: str, forwarded_for: str | None, body: object) -> Answer:
        site = self.config.site_of(token) if token else None
        if site is None:
            log.warning("refused a request from %s: no site has that token", peer)
            return Answer(401, {"error": "unknown token: give this site's issuer token"})
        client = peer
        if peer in self.config.trusted_proxies and forwarded_for:
            client = forwarded_for.split(",")[-1].strip()
        if client not in site.requester.addresses:
            log.warning("refused %s's token from %s, which is not one of its addresses", site.requester.site, client)
            return Answer(403, {"error": f"this token belongs to {site.requester.site}, which does not ask from {client}"})
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("flow_run_id"), str)
            or not isinstance(body.get("public_key"), str)
        ):
            return Answer(400, {"error": "the request needs flow_run_id and public_key (JSON strings)"})
        run_id = body["flow_run_id"].strip().lower()
        if not RUN_ID.match(run_id):
            return Answer(400, {"error": f"{run_id[:60]!r} is not a flow run id (a UUID)"})
        try:
            run = self._run_facts(run_id)
            if run is None:
                log.warning("%s asked for run %s, which Prefect does not know: refused", site.requester.site, run_id)
                return Answer(404, {"error": f"Prefect knows no flow run {run_id}"})
            plan = plan_certificate(run, site.requester, self._fleet_layout(), datetime.now(timezone.utc))
            log.info("%s asked for run %s (%s): %s", site.requester.site, run_id, run.flow_name, plan.sentence())
            if plan.refusal:
                return Answer(403, {"error": plan.refusal})
            certificate = sign(self.config.ca_key, body["public_key"], signing_of(plan))
        except BadPublicKey as error:
            return Answer(400, {"error": str(error)})
        except HotspareError as error:
            log.error("could not answer %s for run %s: %s", site.requester.site, run_id, error)
            return Answer(403 if error.permanent else 503, {"error": str(error)})
        return Answer(
            200,
            {
                "certificate": certificate,
                "principals": list(plan.principals),
                "key_id": plan.key_id,
                "valid_seconds": plan.validity_minutes * 60,
            },
        )


def signing_of(plan: CertificatePlan) -> Signing:
    """The planner's certificate in ssh-keygen's terms (valid from a minute before now)."""
    return Signing(
        plan.key_id,
        plan.principals,
        f"-{CLOCK_SKEW_MINUTES}m:+{plan.validity_minutes}m",
        plan.source_addresses,
        plan.force_command,
    )


def handler_for(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hotspare-issuer"
        sys_version = ""

        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/health":
                self._send(Answer(200, {"status": "ok"}))
            else:
                self._send(Answer(404, {"error": "POST /certificate"}))

        def do_POST(self):  # noqa: N802
            if self.path != "/certificate":
                return self._send(Answer(404, {"error": "POST /certificate"}))
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_REQUEST_BYTES:
                return self._send(Answer(400, {"error": f"a request is 1 to {MAX_REQUEST_BYTES} bytes of JSON"}))
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                return self._send(Answer(400, {"error": "the request is not JSON"}))
            authorization = self.headers.get("Authorization") or ""
            token = authorization[len("Bearer ") :].strip() if authorization.startswith("Bearer ") else ""
            started = time.perf_counter()
            answer = issuer.answer(token, self.client_address[0], self.headers.get("X-Forwarded-For"), body)
            log.debug("answered in %.1f ms", (time.perf_counter() - started) * 1000)
            self._send(answer)

        def _send(self, answer: Answer) -> None:
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
            log.debug("%s %s", self.client_address[0], format % args)

    return Handler


def serve(config_path: Path, address: str, port: int) -> ThreadingHTTPServer:
    """The issuer's HTTP server, bound (call ``serve_forever``)."""
    server = ThreadingHTTPServer((address, port), handler_for(Issuer(read_config(config_path))))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hotspare.issuer.service", description="The control site's SSH certificate issuer."
    )
    parser.add_argument("--config", required=True, type=Path, help="issuer configuration (JSON, 0600)")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT, a loopback or control-site address")
    arguments = parser.parse_args(argv)
    address, _, port = arguments.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from hotspare.issuer.facts import warm_up

    warm_up()
    try:
        server = serve(arguments.config, address, int(port))
    except (HotspareError, OSError, ValueError) as error:
        print(f"hotspare issuer: cannot start on {arguments.listen}: {error}")
        return 6
    log.info("issuing SSH certificates on http://%s:%s (CA %s)", address, port, read_config(arguments.config).ca_key)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
