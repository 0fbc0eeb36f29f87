"""``skiff``: the docker-compatible command line. Only a client of skiffd's Engine API."""
