"""The Docker Engine API: HTTP <-> engine calls. Docker JSON never crosses below this layer."""
