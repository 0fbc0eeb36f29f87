"""A container's files as its processes see them, reached from the host without leaving its root.

``scoped``: path resolution inside a root (symlinks and ``..`` never leave it), over mounts.
``archive``: the tars of ``docker cp`` (stat, archive a path, extract into a directory) and export.
``overlay``: what changed in an overlay upper directory (``docker diff``, the commit layer).
"""
