"""Backup manifests: the sha256 of every file, taken at backup time and carried inside the
snapshot (``META_DIR/<service>/.hotspare-manifest``), compared after a restore. Pure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hotspare.planning.rsync_outcomes import matches_any
from hotspare.planning.shell_programs import relative

META_DIR = "/run/hotspare/backup-meta"  # + /<service>: staged next to the data, inside the snapshot


MANIFEST_NAME = ".hotspare-manifest"


def parse_manifest(data: bytes) -> dict[str, str]:
    """``sha256sum -z`` output -> {relative path: hex digest}."""
    manifest = {}
    for record in data.split(b"\0"):
        if not record:
            continue
        digest, path = record[:64].decode(), record[66:]
        manifest[path.decode(errors="surrogateescape")] = digest
    return manifest


@dataclass(frozen=True)
class ManifestComparison:
    files_checked: int
    missing: tuple[str, ...]
    changed: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def identical(self) -> bool:
        return not (self.missing or self.changed or self.unexpected)

    def problems(self, limit: int = 20) -> list[str]:
        listed = [f"missing {p}" for p in self.missing] + [f"content differs {p}" for p in self.changed]
        listed += [f"not in manifest {p}" for p in self.unexpected]
        return listed[:limit]

    def sentence(self) -> str:
        if self.identical:
            return f"all {self.files_checked} files match the manifest taken at backup time"
        return (
            f"{len(self.changed)} changed, {len(self.missing)} missing, {len(self.unexpected)} unexpected "
            f"of {self.files_checked} files in the manifest"
        )


def compare_manifests(
    expected: dict[str, str], actual: dict[str, str], ignore: Iterable[str] = (), excludes: Sequence[str] = ()
) -> ManifestComparison:
    """Compare the manifest taken at backup time with hashes of the restored files; files the
    fleet file excludes (never backed up) are left out of both sides."""
    ignored = set(ignore)

    def kept(path: str) -> bool:
        return path not in ignored and not matches_any("/" + path.lstrip("/"), list(excludes))

    expected = {path: digest for path, digest in expected.items() if kept(path)}
    actual = {path: digest for path, digest in actual.items() if kept(path)}
    return ManifestComparison(
        files_checked=len(expected),
        missing=tuple(sorted(set(expected) - set(actual))),
        changed=tuple(sorted(path for path in expected.keys() & actual.keys() if expected[path] != actual[path])),
        unexpected=tuple(sorted(set(actual) - set(expected))),
    )


def manifest_in_snapshot(service_name: str) -> str:
    """Relative path of the manifest inside a restore of the service's snapshot."""
    return relative(posixpath.join(META_DIR, service_name, MANIFEST_NAME))
