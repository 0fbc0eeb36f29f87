"""``skiff registry gc``: remove blobs nothing needs, safely while the registry serves.

Mark and sweep run inside one SQLite write transaction (``RegistryStore.sweep``), the lock that
blob commits, mounts and manifest PUTs also take, so they serialise with it. Kept: every
manifest, everything a manifest references, and blobs uploaded or mounted within the grace period
that no manifest references yet (a push in progress uploads its blobs before its manifest).
Upload sessions untouched for ``upload_expiry`` are removed too.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from skiff.registry.server.storage import RegistryStore, SweepReport
from skiff.registry.server.uploads import Uploads

DEFAULT_GRACE = 3600.0
DEFAULT_UPLOAD_EXPIRY = 24 * 3600.0


@dataclass
class GcReport:
    """What one collection removed (or would, dry)."""

    sweep: SweepReport
    uploads: list[str] = field(default_factory=list)
    dry_run: bool = False


def collect_garbage(
    root: Path,
    *,
    grace: float = DEFAULT_GRACE,
    upload_expiry: float = DEFAULT_UPLOAD_EXPIRY,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """One collection over the registry at ``root`` (see the module docstring)."""
    now = time.time() if now is None else now
    store = RegistryStore(root)
    try:
        sweep = store.sweep(now - grace, dry_run=dry_run)
    finally:
        store.close()
    expired = Uploads(Path(root) / "uploads").expired(now - upload_expiry)
    if not dry_run:
        for d in expired:
            shutil.rmtree(d, ignore_errors=True)
    return GcReport(sweep, sorted(d.name for d in expired), dry_run)
