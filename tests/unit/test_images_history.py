"""``docker history`` rows: step images along the parent chain, per-layer sizes, ``<missing>``."""

from __future__ import annotations

from dataclasses import replace

from skiff.api.render import image_history
from skiff.images.history import history_items
from skiff.types.image import HistoryEntry, HistoryItem, ImageConfig, ImageRecord

BASE = HistoryEntry(created="2024-01-01T00:00:00Z", created_by="/bin/sh -c #(nop) ADD file:abc in / ")
ENV = HistoryEntry(created="2024-01-02T00:00:00Z", created_by="/bin/sh -c #(nop)  ENV A=1", empty_layer=True)
RUN = HistoryEntry(created="2024-01-03T00:00:00Z", created_by="/bin/sh -c echo hi > /f")
CMD = HistoryEntry(
    created="2024-01-04T00:00:00Z", created_by='/bin/sh -c #(nop)  CMD ["sh"]', empty_layer=True
)
SIZES = {"sha256:chain-base": 1000, "sha256:chain-run": 7}


def image(
    name: str,
    history: tuple[HistoryEntry, ...],
    chains: tuple[str, ...],
    parent: str = "",
    tags: tuple[str, ...] = (),
) -> ImageRecord:
    return ImageRecord(
        id=f"sha256:{name}",
        config=ImageConfig(),
        diff_ids=tuple(c.replace("chain", "diff") for c in chains),
        chain_ids=chains,
        created=history[-1].created if history else "2024-01-05T00:00:00Z",
        history=history,
        size=sum(SIZES[c] for c in chains),
        parent=parent,
        repo_tags=tags,
    )


def built() -> dict[str, ImageRecord]:
    """busybox (pulled: no parent) and a build on it: ENV, RUN, CMD, each step an image."""
    base = image("base", (BASE,), ("sha256:chain-base",), tags=("busybox:latest",))
    env = image("env", (BASE, ENV), base.chain_ids, parent=base.id)
    run = image("run", (BASE, ENV, RUN), (*base.chain_ids, "sha256:chain-run"), parent=env.id)
    top = image("top", (BASE, ENV, RUN, CMD), run.chain_ids, parent=run.id, tags=("app:1", "app:latest"))
    return {i.id: i for i in (base, env, run, top)}


def rows(images: dict[str, ImageRecord], ref: str) -> list[HistoryItem]:
    return history_items(images[ref], images.get, lambda chain: SIZES[chain])


def test_every_step_image_that_is_still_here_is_named_newest_first() -> None:
    items = rows(built(), "sha256:top")
    assert [i.image_id for i in items] == ["sha256:top", "sha256:run", "sha256:env", "sha256:base"]
    assert [i.created_by for i in items] == [CMD.created_by, RUN.created_by, ENV.created_by, BASE.created_by]
    assert [i.size for i in items] == [0, 7, 0, 1000]  # each layer's own bytes; config steps 0
    assert [i.tags for i in items] == [("app:1", "app:latest"), (), (), ("busybox:latest",)]


def test_a_deleted_step_image_and_everything_below_it_are_missing() -> None:
    images = built()
    del images["sha256:env"]
    items = rows(images, "sha256:top")
    assert [i.image_id for i in items] == ["sha256:top", "sha256:run", "", ""]
    assert [i.size for i in items] == [0, 7, 0, 1000]


def test_a_parent_whose_history_does_not_fit_is_not_claimed() -> None:
    images = built()
    other = HistoryEntry(created="2023-12-31T00:00:00Z", created_by="something else")
    images["sha256:run"] = replace(images["sha256:run"], history=(other, ENV, RUN))
    items = rows(images, "sha256:top")
    assert [i.image_id for i in items] == ["sha256:top", "", "", ""]


def test_a_loaded_image_has_no_parent_so_only_the_top_is_named() -> None:
    images = built()
    loaded = replace(images["sha256:top"], parent="")
    items = history_items(loaded, images.get, lambda chain: SIZES[chain])
    assert [i.image_id for i in items] == ["sha256:top", "", "", ""]


def test_an_image_without_history_is_one_row() -> None:
    bare = image("bare", (), ("sha256:chain-base",), tags=("bare:1",))
    (item,) = history_items(bare, lambda _: None, lambda chain: SIZES[chain])
    assert (item.image_id, item.size, item.tags) == ("sha256:bare", 1000, ("bare:1",))


def test_rendered_as_dockerd_answers() -> None:
    images = built()
    del images["sha256:env"]
    out = image_history(rows(images, "sha256:top"))
    assert out[0] == {
        "Id": "sha256:top",
        "Created": 1704326400,
        "CreatedBy": CMD.created_by,
        "Tags": ["app:1", "app:latest"],
        "Size": 0,
        "Comment": "",
    }
    assert out[1]["Tags"] is None and out[1]["Size"] == 7
    assert [o["Id"] for o in out[2:]] == ["<missing>", "<missing>"]
