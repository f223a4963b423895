"""Fleet file section ``replication``: how copies are kept, verified and scheduled fleet-wide.

Every field has a default, so a fleet file without the section keeps working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hotspare.fleet.base import Strict


class Replication(Strict):
    copy_backend: Literal["auto", "btrfs-snapshot", "btrfs-send", "hard-links"] = Field(
        default="auto",
        description=(
            "How a mirror keeps point-in-time copies. auto: btrfs read-only snapshots filled by rsync where the "
            "mirror's copies folder is on btrfs (with btrfs-progs installed), hard-linked folders (rsync --link-dest) "
            "elsewhere. btrfs-snapshot: the same, said outright. btrfs-send: snapshots too, and where production's "
            "data paths are btrfs subvolumes their snapshots are shipped (btrfs send | receive) instead of walked by "
            "rsync; a stream carries the data paths as they are on disk (exclude patterns do not apply) and is held "
            "inside the service's space bound where the mirror counts simple quotas (turned on by the first copy "
            "where the kernel has them), not under full quota accounting. hard-links: always hard links. The btrfs "
            "choices are honoured "
            "only where btrfs is really there."
        ),
    )
    full_verification_days: float = Field(
        default=7.0,
        gt=0,
        le=365,
        description=(
            "Every byte of a copy is compared with production by checksum at least once per this many days: each "
            "replication compares what it changed plus a rolling slice of the rest (`hotspare verify --full` "
            "compares everything at once)."
        ),
    )
    replications_per_day: float = Field(
        default=2.0,
        gt=0,
        le=1440,
        description=(
            "Replications per day of the services on defaults.replication_schedule (sizes their rolling verification "
            "slice); a service with an interval of its own (a shorter RPO) counts 1440 / its interval in minutes."
        ),
    )
    parallel_services: int = Field(
        default=2, ge=1, le=64, description="Services replicated at the same time across the fleet (replicate --all)."
    )
    parallel_per_source: int = Field(
        default=1, ge=1, le=64, description="Services replicated at the same time from one production server."
    )
    parallel_per_target: int = Field(default=2, ge=1, le=64, description="Services replicated at the same time into one mirror.")
