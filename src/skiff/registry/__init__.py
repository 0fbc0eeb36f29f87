"""Images between hosts: the OCI Distribution / Docker Registry v2 protocol.

``server/`` is ``skiff registry serve`` (a registry of its own); the client side (pull, push,
login) lives beside it. ``media.py`` holds the media types both speak.
"""
