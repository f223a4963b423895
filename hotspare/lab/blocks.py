"""The lab's credentials saved as Prefect blocks (the only part of the lab that needs Prefect,
imported only when called).

A mixin of ``Lab`` (``lab.py``).
"""

from __future__ import annotations

import json
import logging

from hotspare.lab import (
    bmc,
    phone,  # the recording phone provider endpoint (phone.py)
)
from hotspare.lab.topology import BLOCK_NAMES, SERVICES, restic_block

log = logging.getLogger("hotspare.lab")


class LabBlocks:
    """The lab's credentials as Prefect blocks (mixin of ``Lab``)."""

    def register_blocks(self, ssh_key: bool = True) -> list[str]:
        """Save the lab's credentials as Prefect blocks in the current Prefect API.

        ``ssh_key=False`` leaves the fleet-wide SSH key out: where every run logs in with a
        certificate from the control site's issuer, no API client can read a standing key.

        Imports Prefect and the block classes only here, so importing the lab never needs
        a Prefect server.
        """
        from blocks.credentials import (
            BackupRepositoryPassword,
            DnsUpdateKey,
            SmtpServer,
            SshCredentials,
        )

        self._require_up()
        stored = json.loads(self._path("secrets.json").read_text())
        blocks = {
            BLOCK_NAMES["ssh"]: SshCredentials(user=stored["ssh"]["user"], private_key=stored["ssh"]["private_key"]),
            BLOCK_NAMES["tsig"]: DnsUpdateKey(
                key_name=stored["tsig"]["key_name"], algorithm=stored["tsig"]["algorithm"], secret=stored["tsig"]["secret"]
            ),
            BLOCK_NAMES["smtp"]: SmtpServer(
                host=stored["smtp"]["host"], port=stored["smtp"]["port"], username=None, password=None, starttls=False
            ),
        }
        if not ssh_key:
            del blocks[BLOCK_NAMES["ssh"]]
        for service in SERVICES:
            blocks[restic_block(service.name)] = BackupRepositoryPassword(password=stored["restic"]["passwords"][service.name])
        blocks.update(phone.blocks(self))
        blocks.update(bmc.credential_blocks(self.directory))
        for name, block in blocks.items():
            block.save(name, overwrite=True)
            log.info("saved block %s (%s)", name, type(block).__name__)
        return list(blocks)
