"""The engine: the only code that combines store, images and runtime.

``ContainerService``, ``ImageService`` and ``EventBus`` are what the API layer calls.
"""
