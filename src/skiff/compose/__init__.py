"""Compose: multi-container applications from a compose file, over the Engine API only.

Loading (``loader``, ``model``) turns files into a canonical :class:`~skiff.compose.model.Project`;
the runtime observes the daemon (``observed``), plans (``plan``, pure) and executes
(``executor``) through ``skiff.client``, so it works against skiffd and dockerd alike.
"""
