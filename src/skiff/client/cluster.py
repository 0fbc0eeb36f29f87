"""Client calls for skiff's cluster API (``/skiff/cluster/...``), mixed into ``Client``.

Objects come back as the daemon's JSON: the cluster model's dataclasses as plain dicts (field
names as keys) plus computed keys (``Status``, ``Leader``, ``Running``, ``NodeHostname`` ...).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from skiff.client.errors import mapped_errors

JSONDict = dict[str, Any]
BASE = "/skiff/cluster"


class ClusterMixin:
    """The cluster methods of ``Client`` (which provides ``_api``, ``host``, ``_json``, ``_url``)."""

    _api: Any
    host: str

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:  # provided by Client
        raise NotImplementedError

    def _url(self, path: str, *args: str, versioned: bool = True) -> str:  # provided by Client
        raise NotImplementedError

    def _curl(self, path: str, *refs: str) -> str:
        return self._url(BASE + path.format(*(quote(r, safe="") for r in refs)), versioned=False)

    # -- cluster -----------------------------------------------------------------------------
    def cluster_init(
        self,
        *,
        advertise_addr: str | None = None,
        listen_addr: str = "0.0.0.0:2377",
        store: str | None = None,
        etcd_local: bool = False,
    ) -> JSONDict:
        """``POST /skiff/cluster/init`` -> {"ClusterID", "NodeID", "JoinTokens": {"Worker", "Manager"}}."""
        body = {
            "AdvertiseAddr": advertise_addr,
            "ListenAddr": listen_addr,
            "Store": store,
            "EtcdLocal": etcd_local,
        }
        out: JSONDict = self._json("POST", self._curl("/init"), json=body)
        return out

    def cluster_join(
        self,
        remote_addrs: list[str],
        token: str,
        *,
        advertise_addr: str | None = None,
        listen_addr: str = "0.0.0.0:2377",
    ) -> JSONDict:
        """``POST /skiff/cluster/join`` -> {"NodeID", "Role"}."""
        body = {
            "RemoteAddrs": list(remote_addrs),
            "JoinToken": token,
            "AdvertiseAddr": advertise_addr,
            "ListenAddr": listen_addr,
        }
        out: JSONDict = self._json("POST", self._curl("/join"), json=body)
        return out

    def cluster_leave(self, *, force: bool = False) -> None:
        self._json("POST", self._curl("/leave"), params={"force": "1" if force else "0"})

    def cluster_inspect(self) -> JSONDict:
        """{"ClusterID", "NodeID", "Role", "Managers", "Leader", "Store", "Addr", "ListenAddr"}."""
        out: JSONDict = self._json("GET", self._curl(""))
        return out

    def cluster_join_token(self, role: str, *, rotate: bool = False) -> str:
        method = "POST" if rotate else "GET"
        out = self._json(
            method, self._curl("/join-token"), params={"role": role, "rotate": "1" if rotate else "0"}
        )
        return str(out["Token"])

    # -- nodes -------------------------------------------------------------------------------
    def nodes(self) -> list[JSONDict]:
        out: list[JSONDict] = self._json("GET", self._curl("/nodes"))
        return out

    def node_inspect(self, ref: str) -> JSONDict:
        out: JSONDict = self._json("GET", self._curl("/nodes/{}", ref))
        return out

    def node_update(
        self,
        ref: str,
        *,
        labels_add: dict[str, str] | None = None,
        labels_rm: list[str] | None = None,
        availability: str | None = None,
        role: str | None = None,
    ) -> None:
        body = {
            "LabelsAdd": labels_add or {},
            "LabelsRm": labels_rm or [],
            "Availability": availability,
            "Role": role,
        }
        self._json("POST", self._curl("/nodes/{}/update", ref), json=body)

    def node_rm(self, ref: str, *, force: bool = False) -> None:
        self._json("DELETE", self._curl("/nodes/{}", ref), params={"force": "1" if force else "0"})

    # -- services and tasks ------------------------------------------------------------------
    def services(self) -> list[JSONDict]:
        out: list[JSONDict] = self._json("GET", self._curl("/services"))
        return out

    def service_create(self, spec: JSONDict) -> JSONDict:
        """``spec`` is ``to_plain(ServiceSpec)``; -> {"ID": ...}."""
        out: JSONDict = self._json("POST", self._curl("/services"), json=spec)
        return out

    def service_inspect(self, ref: str) -> JSONDict:
        out: JSONDict = self._json("GET", self._curl("/services/{}", ref))
        return out

    def service_update(
        self, ref: str, spec: JSONDict | None = None, *, rollback: bool = False, force: bool = False
    ) -> None:
        params = {"rollback": "1" if rollback else "0", "force": "1" if force else "0"}
        kwargs: dict[str, Any] = {"params": params}
        if spec is not None:
            kwargs["json"] = spec
        self._json("POST", self._curl("/services/{}/update", ref), **kwargs)

    def service_rm(self, ref: str) -> None:
        self._json("DELETE", self._curl("/services/{}", ref))

    def tasks(self, *, service: str | None = None, node: str | None = None) -> list[JSONDict]:
        params = {k: v for k, v in (("service", service), ("node", node)) if v}
        out: list[JSONDict] = self._json("GET", self._curl("/tasks"), params=params)
        return out

    def service_logs(
        self, ref: str, *, follow: bool = False, tail: str = "all", timestamps: bool = False
    ) -> Iterator[tuple[str, bytes]]:
        """(task label like ``web.1.abc123@node2``, line) pairs; lines keep their newline."""
        params = {"follow": "1" if follow else "0", "tail": tail, "timestamps": "1" if timestamps else "0"}
        with mapped_errors(self.host):
            resp = self._api.request("GET", self._curl("/services/{}/logs", ref), params=params, stream=True)
            self._api._raise_for_status(resp)
            try:
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    yield str(msg.get("Task", "")), base64.b64decode(msg.get("Data") or "")
            finally:
                resp.close()
