"""The lab's Redfish BMC (standard library only, run as a script): a static tree plus power.

Serves ``DIR/<path below /redfish/v1>/index.json`` for GET, re-read on every request (so
``lab break`` edits a PowerSupply's ``Status.Health`` in place), behind HTTP basic
authentication with the BMC's credentials. ``POST /redfish/v1/Systems/<id>/Actions/
ComputerSystem.Reset`` with ``{"ResetType": "ForceOff" | "GracefulShutdown" | "On" | "ForceOn" |
"ForceRestart" | "PushPowerButton"}`` switches the host's power through the same switch the IPMI
BMCs use (``power_switch.py``); the System's ``PowerState`` is read from that switch.

    redfish_bmc.py ADDRESS PORT TREE CREDENTIALS_JSON SWITCH_ARGS_JSON
"""

from __future__ import annotations

import base64
import hmac
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import power_switch  # a sibling script, imported by path on purpose

ROOT = "/redfish/v1"
RESET_SUFFIX = "/Actions/ComputerSystem.Reset"
MAX_BODY = 64 * 1024
OFF_TYPES = {"ForceOff", "GracefulShutdown"}
ON_TYPES = {"On", "ForceOn"}


class RedfishHandler(BaseHTTPRequestHandler):
    tree: Path
    expected_authorization: str
    switch: dict

    def log_message(self, format: str, *args) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), self.expected_authorization.encode()):
            return True
        self._reply(
            HTTPStatus.UNAUTHORIZED,
            {"error": {"message": "authentication required"}},
            {"WWW-Authenticate": 'Basic realm="lab BMC"'},
        )
        return False

    def _reply(self, status: HTTPStatus, body: dict | None, headers: dict | None = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _resource(self, path: str) -> Path | None:
        relative = path[len(ROOT) :].strip("/")
        if ".." in relative.split("/"):
            return None
        candidate = self.tree / relative / "index.json"
        return candidate if candidate.is_file() else None

    def _power(self) -> int:
        return power_switch.read_state(Path(self.switch["state"]))

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        resource = self._resource(path) if path.startswith(ROOT) else None
        if resource is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": {"message": f"{path} not found"}})
            return
        document = json.loads(resource.read_text())
        if document.get("@odata.type", "").startswith("#ComputerSystem."):
            document["PowerState"] = "On" if self._power() else "Off"
        self._reply(HTTPStatus.OK, document)

    def do_POST(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": {"message": "body too large"}})
            return
        system = path[: -len(RESET_SUFFIX)] if path.endswith(RESET_SUFFIX) else ""
        if not system.startswith(f"{ROOT}/Systems/") or self._resource(system) is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": {"message": f"no action at {path}"}})
            return
        try:
            reset_type = json.loads(self.rfile.read(length) or b"{}").get("ResetType")
        except (ValueError, AttributeError):
            reset_type = None
        if reset_type == "PushPowerButton":
            reset_type = "ForceOff" if self._power() else "On"
        if reset_type not in OFF_TYPES | ON_TYPES | {"ForceRestart"}:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": {"message": f"unsupported ResetType {reset_type!r}"}})
            return
        arguments = (
            Path(self.switch["state"]),
            self.switch["netns"],
            Path(self.switch["sshd_pidfile"]),
            list(self.switch["halves"]),
        )
        if reset_type in OFF_TYPES | {"ForceRestart"}:
            power_switch.set_power(*arguments, on=False)
        if reset_type in ON_TYPES | {"ForceRestart"}:
            power_switch.set_power(*arguments, on=True)
        self._reply(HTTPStatus.NO_CONTENT, None)


def main(argv: list[str]) -> int:
    address, port, tree, credentials_file, switch_file = argv
    credentials = json.loads(Path(credentials_file).read_text())
    token = base64.b64encode(f"{credentials['username']}:{credentials['password']}".encode()).decode()
    RedfishHandler.tree = Path(tree).resolve()
    RedfishHandler.expected_authorization = f"Basic {token}"
    RedfishHandler.switch = json.loads(Path(switch_file).read_text())
    server = ThreadingHTTPServer((address, int(port)), RedfishHandler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
