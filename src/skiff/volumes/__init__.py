"""Volumes below the engine: Docker's mount grammar, the local driver, and copy-up.

- ``specs``: ``-v``/``Binds``, ``--mount``/``Mounts``, ``--volumes-from`` and image ``VOLUME``s
  resolved into the mount points a container gets (pure; the engine creates the volumes).
- ``local``: the ``local`` driver: ``<root>/volumes/<name>/_data``, names and options as
  dockerd's local driver checks them, tmpfs/bind-style volumes mounted on ``_data``.
- ``copyup``: populate a new volume from the image's content, keeping owners, modes, xattrs.
- ``filters``: ``volume ls``/``prune`` filters.
"""
