"""Join tokens, node secrets and the node's persisted cluster state (``<root>/cluster/state.json``).

A join token has Swarm's shape, ``SKFTKN-1-<cluster digest>-<secret>``: the digest (50 base-36
characters of the SHA-256 of the cluster id) lets a joiner check it reached the cluster the
token belongs to before it sends the secret; the secret (25 base-36 characters) is what the
manager checks. The store keeps only SHA-256 hashes of the tokens (under ``keys.CLUSTER``); the
plain tokens live in the managers' state files, readable by root only.

A node authenticates on the cluster port with ``Authorization: Bearer <node id>.<mac>``, the mac
an HMAC of the node id under the cluster key that only managers hold (so a manager checks a
node's secret without a lookup, and a node cannot mint another's).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skiff.errors import InvalidArgument

TOKEN_PREFIX = "SKFTKN"
TOKEN_VERSION = "1"
DIGEST_LENGTH = 50
SECRET_LENGTH = 25
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out)) or "0"


def cluster_digest(cluster_id: str) -> str:
    return _base36(hashlib.sha256(cluster_id.encode()).digest()).rjust(DIGEST_LENGTH, "0")[:DIGEST_LENGTH]


def make_join_token(cluster_id: str) -> str:
    secret = "".join(secrets.choice(_B36) for _ in range(SECRET_LENGTH))
    return f"{TOKEN_PREFIX}-{TOKEN_VERSION}-{cluster_digest(cluster_id)}-{secret}"


def parse_join_token(token: str) -> str:
    """The token's cluster digest; ``InvalidArgument`` when it is not a join token."""
    parts = token.strip().split("-")
    if (
        len(parts) != 4
        or parts[0] != TOKEN_PREFIX
        or parts[1] != TOKEN_VERSION
        or len(parts[2]) != DIGEST_LENGTH
        or len(parts[3]) != SECRET_LENGTH
        or not all(c in _B36 for c in parts[2] + parts[3])
    ):
        raise InvalidArgument(f"invalid join token: expected {TOKEN_PREFIX}-1-<digest>-<secret>")
    return parts[2]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return bool(token_hash) and hmac.compare_digest(hash_token(token), token_hash)


def node_secret(cluster_key: str, node_id: str) -> str:
    mac = hmac.new(bytes.fromhex(cluster_key), node_id.encode(), hashlib.sha256).hexdigest()[:40]
    return f"{node_id}.{mac}"


def secret_node(cluster_key: str, secret: str) -> str | None:
    """The node id a bearer secret authenticates (None: not valid)."""
    node_id, _, _ = secret.partition(".")
    if not node_id or not cluster_key:
        return None
    return node_id if hmac.compare_digest(node_secret(cluster_key, node_id), secret) else None


def new_cluster_key() -> str:
    return secrets.token_hex(32)


@dataclass
class ClusterState:
    """What a node keeps about its cluster membership across skiffd restarts."""

    cluster_id: str
    node_id: str
    role: str  # "manager" | "worker"
    secret: str  # this node's bearer secret on the cluster port
    listen_addr: str  # host:port the cluster listener binds
    advertise_addr: str  # host:port other nodes reach it at
    managers: list[str] = field(default_factory=list)  # managers' cluster addresses
    store: str = ""  # managers: the store URL
    max_txn_ops: int = 128
    cluster_key: str = ""  # managers only
    worker_token: str = ""  # managers only
    manager_token: str = ""  # managers only
    etcd_local: bool = False  # this manager runs its own supervised etcd member
    etcd_initial_cluster: str = ""  # that member's --initial-cluster (a joining manager's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterState:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def load_state(path: Path) -> ClusterState | None:
    """The state file (None: this node is in no cluster)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read the cluster state {path}: {e}") from None
    return ClusterState.from_dict(data)


def save_state(path: Path, state: ClusterState) -> None:
    """Write the state atomically (a temporary file, fsynced, renamed over), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(state.to_dict(), indent=2, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def remove_state(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
