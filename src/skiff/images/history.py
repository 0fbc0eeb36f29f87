"""``docker history`` rows: an image's history entries with their layers' sizes and step images.

dockerd finds the image each step made along the ``parent`` chain: a build step's image and a
commit's image point at the image they started from, so the newest entry belongs to the image
itself, the one below it to its parent, and so on, one ancestor per entry. Images from a pull
or a load have no parent, and their older entries show ``<missing>``. Here an ancestor is taken
only if its own history is exactly the entries up to that step, so a parent that does not fit
(a history rewritten by another tool) shows ``<missing>`` rather than a wrong ID.
"""

from __future__ import annotations

from collections.abc import Callable

from skiff.types.image import HistoryItem, ImageRecord


def history_items(
    image: ImageRecord,
    image_by_id: Callable[[str], ImageRecord | None],
    layer_size: Callable[[str], int],
) -> list[HistoryItem]:
    """Newest entry first; ``image_by_id`` gives a local image or None, ``layer_size`` a chain's bytes."""
    if not image.history:  # nothing recorded (a config written by hand): one row for the image
        return [HistoryItem(image.id, image.created, "", image.comment, image.size, image.repo_tags)]
    sizes: list[int] = []
    layer = 0
    for entry in image.history:
        if entry.empty_layer or layer >= len(image.chain_ids):
            sizes.append(0)
            continue
        sizes.append(layer_size(image.chain_ids[layer]))
        layer += 1
    owners: list[ImageRecord | None] = [None] * len(image.history)
    step: ImageRecord | None = image
    for count in range(len(image.history), 0, -1):
        if step is None or step.history != image.history[:count]:
            break
        owners[count - 1] = step
        step = image_by_id(step.parent) if step.parent else None
    items = [
        HistoryItem(
            image_id=owner.id if owner else "",
            created=entry.created,
            created_by=entry.created_by,
            comment=entry.comment,
            size=size,
            tags=owner.repo_tags if owner else (),
        )
        for entry, size, owner in zip(image.history, sizes, owners, strict=True)
    ]
    items.reverse()
    return items
