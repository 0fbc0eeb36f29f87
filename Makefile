# skiff: the two Quick start commands are `make demo` and `make test`.
# Both install what is missing (Debian packages via apt-get, the package into .venv) first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PKGS := runc crun conmon containernetworking-plugins iptables busybox-static debootstrap \
            skopeo procps iproute2 python3-venv util-linux tini docker-registry apache2-utils etcd-server
PYTEST_ARGS ?=
# The whole suite includes the slow Debian bootstrap (debootstrap from the host's apt mirror);
# SKIFF_SLOW=0 make test leaves it out.
export SKIFF_SLOW ?= 1

.PHONY: deps venv lint typecheck test test-unit test-integration test-e2e demo demo-compose clean

deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: venv
	$(VENV)/bin/mypy

test-unit: venv
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: deps venv
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

test-e2e: deps venv
	$(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

test: deps venv lint typecheck
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

demo: deps venv
	$(VENV)/bin/python -m skiff.demo

demo-compose: deps venv
	$(VENV)/bin/python -m skiff.demo compose

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Benchmarks (never part of `make test`): each bench installs its peers (docker.io, podman) when
# missing, starts them in private dirs under /tmp/skiff-bench-*, and removes everything afterwards.
# Results: bench/results/*.json, merged into docs/benchmarks.md by bench.report.
.PHONY: bench
bench: deps venv
	$(PY) -m bench.run_latency --runs 30
	$(PY) -m bench.run_bridge --runs 50
	$(PY) -m bench.churn --seconds 20 --rounds 2 --clients 8
	$(PY) -m bench.memory --count 100
	$(PY) -m bench.ps_latency --containers 1000 --runs 30
	$(PY) -m bench.build --runs 20
	$(PY) -m bench.docker_cli --containers 100 --runs 50
	$(PY) -m bench.report
