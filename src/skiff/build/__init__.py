"""Dockerfiles: parsing (``parser``, ``instructions``), substitution (``shell``), the rules of
each instruction (``dispatch``), ``.dockerignore`` and the build context, and safe file copies
into a root (``fs``). Pure parts; the engine's ``BuildService`` runs builds with them.
"""
