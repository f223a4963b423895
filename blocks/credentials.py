"""Credential blocks. The fleet file names them; secrets live only here, as ``SecretStr``.

Every secret leaves a block only on its way to stdin or a process environment, never into
argv, logs, artifacts or exception messages.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator

from hotspare.planning.subscriptions import KEY_TEXT


class SshCredentials(Block):
    """Login for the fleet's servers: a user and its private key (OpenSSH or PEM format)."""

    _block_type_name = "hotspare SSH credentials"
    _description = "User and private key hotspare uses to reach servers over SSH."

    user: str = Field(default="root", description="Remote user hotspare logs in as.")
    private_key: SecretStr = Field(description="Private key, OpenSSH or PEM text, unencrypted.")


class DnsUpdateKey(Block):
    """TSIG key allowed to send RFC 2136 updates for a zone."""

    _block_type_name = "hotspare DNS update key"
    _description = "TSIG key used to sign dynamic DNS updates."

    key_name: str = Field(description="TSIG key name as configured on the authoritative server.")
    algorithm: str = Field(default="hmac-sha256", description="TSIG algorithm, e.g. hmac-sha256.")
    secret: SecretStr = Field(description="Base64 TSIG secret.")


class SmtpServer(Block):
    """Mail relay for notices to operators and customers."""

    _block_type_name = "hotspare SMTP server"
    _description = "SMTP relay hotspare sends notices through."

    host: str = Field(description="SMTP server host name or address.")
    port: int = Field(default=25, description="SMTP port.")
    username: str | None = Field(default=None, description="Login user, if the relay needs one.")
    password: SecretStr | None = Field(default=None, description="Login password, if any.")
    starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")


class BackupRepositoryPassword(Block):
    """Password of one service's restic repository on the backup storage host.

    One block per service: the production that backs a service up learns its password, and
    must learn no other service's."""

    _block_type_name = "hotspare backup repository password"
    _description = "Password that encrypts one service's backup repository (one block per service)."

    password: SecretStr = Field(description="Repository password; given to restic on stdin/env.")


class BmcCredentials(Block):
    """Login of servers' baseboard management controllers (IPMI or Redfish)."""

    _block_type_name = "hotspare BMC credentials"
    _description = "User and password hotspare reads BMC sensors with (IPMI over LAN, Redfish)."

    username: str = Field(description="BMC user (read-only operator rights are enough).")
    password: SecretStr = Field(description="BMC password; given to ipmitool in its environment.")


class PhoneProvider(Block):
    """An account at a phone provider speaking Twilio's REST shape, for calls and SMS pages.

    The fleet's ``incidents.phone_providers`` lists these blocks in order: the first is used, the
    next ones when it is down. The auth token also verifies the provider's signed webhooks
    (keypresses, SMS replies)."""

    _block_type_name = "hotspare phone provider"
    _description = "Phone/SMS provider account (Twilio REST shape) that places emergency calls and texts."

    base_url: str = Field(default="https://api.twilio.com", description="API base URL, e.g. https://api.twilio.com.")
    account_sid: str = Field(description="Account SID (the basic-auth user and part of every API path).")
    auth_token: SecretStr = Field(description="Auth token: the basic-auth password and the webhook signing key.")
    from_number: str = Field(description="Number calls and texts come from, in E.164 form (+15550100).")


class StatusPageKey(Block):
    """The fleet's one status page key: the HMAC key of customer page addresses, public incident
    references and unsubscribe links (``tasks/status_page_key.py`` makes it on first use).

    One block per fleet, so every process that publishes pages, sends notices or answers the
    subscription form computes the same addresses. A malformed value is refused without echoing
    it (``hide_input_in_errors``)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "hotspare status page key"
    _description = "HMAC key of the customers' status page addresses and unsubscribe links (one per fleet)."

    key: SecretStr = Field(
        description="64 hex digits (32 random bytes). Replacing it moves every customer page to a new address "
        "and voids the unsubscribe links already mailed."
    )

    @field_validator("key")
    @classmethod
    def _is_64_hex_digits(cls, value: SecretStr) -> SecretStr:
        if not KEY_TEXT.match(value.get_secret_value()):
            raise ValueError("a status page key is 64 hex digits")
        return value
