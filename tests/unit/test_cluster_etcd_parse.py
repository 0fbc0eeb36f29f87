"""EtcdStore's txn answer parser: per-operation responses skipped, nothing else lost."""

from __future__ import annotations

import json

import pytest

from skiff.cluster.state.etcd import _txn_answer

HEADER = {"cluster_id": "1", "member_id": "2", "revision": "42", "raft_term": "3"}
RESPONSES = [{"response_put": {"header": {"revision": "42"}}}] * 3


def _raw(answer: dict[str, object]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "answer",
    [
        {"header": HEADER, "succeeded": True, "responses": RESPONSES},  # etcd's order
        {"header": HEADER, "responses": RESPONSES},  # failed: succeeded left out
        {"header": HEADER, "responses": RESPONSES, "succeeded": True},  # succeeded after them
        {"responses": RESPONSES, "header": HEADER, "succeeded": True},  # responses first
        {"header": HEADER, "succeeded": True},  # no operations
        {"error": "etcdserver: too many operations in txn request", "code": 3, "message": "x"},
    ],
)
def test_txn_answer_keeps_header_and_outcome(answer: dict[str, object]) -> None:
    parsed = _txn_answer(_raw(answer))
    assert {k: v for k, v in parsed.items() if k != "responses"} == {
        k: v for k, v in answer.items() if k != "responses"
    }
    assert bool(parsed.get("succeeded", False)) is bool(answer.get("succeeded", False))


def test_txn_answer_skips_the_responses_in_etcds_order() -> None:
    parsed = _txn_answer(_raw({"header": HEADER, "succeeded": True, "responses": RESPONSES}))
    assert "responses" not in parsed and parsed["header"]["revision"] == "42"


def test_txn_answer_still_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        _txn_answer(b'{"header":{"revision":"1"},"succeeded":true,"responses":[{')
