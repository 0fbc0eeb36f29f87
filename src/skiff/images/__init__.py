"""Images: references, layer tars, config JSON, the image store and bootstrap images."""

from skiff.images.changes import apply_changes
from skiff.images.imagestore import ImageStore
from skiff.images.layers import ApplyResult, apply_layer, diff_tar
from skiff.images.reference import Reference, normalize_tag, parse_reference

__all__ = [
    "ApplyResult",
    "ImageStore",
    "Reference",
    "apply_changes",
    "apply_layer",
    "diff_tar",
    "normalize_tag",
    "parse_reference",
]
