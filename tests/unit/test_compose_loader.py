"""The compose loader: canonical form as docker compose v2 prints it, files, names, old formats.

Expected outputs are written by hand from the Compose Specification and what
``docker compose config --format json`` prints for the same input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skiff.compose.loader import load_project
from skiff.compose.loader_config import config_output
from skiff.compose.model import Project
from skiff.errors import InvalidArgument

HOME = "/home/u"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def load(
    root: Path,
    files: dict[str, str] | None = None,
    names: list[str] | None = None,
    env: dict[str, str] | None = None,
    **kw: Any,
) -> Project:
    write(root, files or {})
    return load_project(
        [root / n for n in names] if names else None,
        kw.pop("project_dir", None),
        kw.pop("project_name", None),
        {"HOME": HOME, **(env or {})},
        kw.pop("profiles", []),
        cwd=kw.pop("cwd", root),
        **kw,
    )


RICH = """
name: shop
x-env: &env
  LOG: debug
services:
  web:
    image: "nginx:${TAG:-1.25}"
    build:
      context: ./web
      args: [VERSION=1, FROM_ENV, NOT_IN_ENV]
      target: prod
      labels: {a: b}
    command: ["nginx", "-g", "daemon off;"]
    entrypoint: /docker-entrypoint.sh --flag "two words"
    environment:
      <<: *env
      NUMBER: 1
      BOOL: true
      FLOAT: 1.50
      NONE:
      FROM_ENV:
    env_file: web.env
    ports:
      - 80
      - "8080:80"
      - "127.0.0.1:9000-9001:9000-9001/udp"
      - target: 443
        published: 8443
    expose: [3000, "4000"]
    volumes:
      - data:/var/lib/data
      - ./html:/usr/share/nginx/html:ro
      - ~/cache:/cache
      - /anon
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 64m}
    networks:
      front:
        aliases: [www]
        ipv4_address: 172.30.0.10
      back:
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: curl -f http://localhost
      interval: 90s
      timeout: 500ms
      retries: 3
      start_period: 1h
    deploy:
      replicas: 2
      resources:
        limits: {cpus: "0.5", memory: 512M}
        reservations: {memory: 128m}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3}
    labels: [com.example=1]
    extra_hosts: ["other=10.0.0.3", "db.local:10.0.0.2"]
    ulimits:
      nproc: 65535
      nofile: {soft: 1024, hard: 2048}
    stop_grace_period: 1m30s
    stop_signal: SIGQUIT
    sysctls: {net.core.somaxconn: 1024}
    tmpfs: /run
    dns: 8.8.8.8
    secrets: [token]
    configs: [{source: conf, target: /etc/conf}]
    privileged: false
    read_only: true
    tty: true
    stdin_open: true
    init: false
    shm_size: 1g
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    user: "1000:1000"
    working_dir: /srv
    hostname: web1
    restart: unless-stopped
    x-note: kept
  db:
    image: postgres:16
    volumes: [data:/var/lib/postgresql/data]
networks:
  front:
    driver: bridge
    ipam: {config: [{subnet: 172.30.0.0/24}]}
  back:
    external: true
volumes:
  data:
    labels: [x=y]
  ext:
    external:
      name: real-ext
secrets:
  token: {file: ./token.txt}
configs:
  conf: {content: "hello"}
"""


def test_canonical_form_of_every_supported_key(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {"compose.yaml": RICH, "web.env": "FROM_FILE=1\nNUMBER=from-file\n"},
        env={"FROM_ENV": "fe"},
    )
    root = str(tmp_path)
    assert p.name == "shop"
    assert p.working_dir == tmp_path
    web = p.to_json_dict()["services"]["web"]
    assert web == {
        "build": {
            "args": {"FROM_ENV": "fe", "VERSION": "1"},
            "context": f"{root}/web",
            "dockerfile": "Dockerfile",
            "labels": {"a": "b"},
            "target": "prod",
        },
        "cap_add": ["NET_ADMIN"],
        "cap_drop": ["ALL"],
        "command": ["nginx", "-g", "daemon off;"],
        "configs": [{"source": "conf", "target": "/etc/conf"}],
        "depends_on": {"db": {"condition": "service_healthy", "required": True}},
        "deploy": {
            "placement": {},
            "replicas": 2,
            "resources": {
                "limits": {"cpus": 0.5, "memory": 536870912},
                "reservations": {"memory": 134217728},
            },
            "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3},
        },
        "dns": ["8.8.8.8"],
        "entrypoint": ["/docker-entrypoint.sh", "--flag", "two words"],
        "environment": {
            "BOOL": "true",
            "FLOAT": "1.5",
            "FROM_ENV": "fe",
            "FROM_FILE": "1",
            "LOG": "debug",
            "NONE": None,
            "NUMBER": "1",
        },
        "expose": ["3000", "4000"],
        "extra_hosts": ["db.local=10.0.0.2", "other=10.0.0.3"],
        "healthcheck": {
            "interval": "1m30s",
            "retries": 3,
            "start_period": "1h0m0s",
            "test": ["CMD-SHELL", "curl -f http://localhost"],
            "timeout": "500ms",
        },
        "hostname": "web1",
        "image": "nginx:1.25",
        "init": False,
        "labels": {"com.example": "1"},
        "networks": {"back": None, "front": {"aliases": ["www"], "ipv4_address": "172.30.0.10"}},
        "ports": [
            {"mode": "ingress", "protocol": "tcp", "target": 80},
            {"mode": "ingress", "protocol": "tcp", "published": "8080", "target": 80},
            {
                "host_ip": "127.0.0.1",
                "mode": "ingress",
                "protocol": "udp",
                "published": "9000",
                "target": 9000,
            },
            {
                "host_ip": "127.0.0.1",
                "mode": "ingress",
                "protocol": "udp",
                "published": "9001",
                "target": 9001,
            },
            {"mode": "ingress", "protocol": "tcp", "published": "8443", "target": 443},
        ],
        "read_only": True,
        "restart": "unless-stopped",
        "secrets": [{"source": "token", "target": "/run/secrets/token"}],
        "shm_size": 1073741824,
        "stdin_open": True,
        "stop_grace_period": "1m30s",
        "stop_signal": "SIGQUIT",
        "sysctls": {"net.core.somaxconn": "1024"},
        "tmpfs": ["/run"],
        "tty": True,
        "ulimits": {"nofile": {"hard": 2048, "soft": 1024}, "nproc": 65535},
        "user": "1000:1000",
        "volumes": [
            {"source": "data", "target": "/var/lib/data", "type": "volume", "volume": {}},
            {
                "bind": {"create_host_path": True},
                "read_only": True,
                "source": f"{root}/html",
                "target": "/usr/share/nginx/html",
                "type": "bind",
            },
            {
                "bind": {"create_host_path": True},
                "source": f"{HOME}/cache",
                "target": "/cache",
                "type": "bind",
            },
            {"target": "/anon", "type": "volume", "volume": {}},
            {"target": "/tmp", "tmpfs": {"size": 67108864}, "type": "tmpfs"},
        ],
        "working_dir": "/srv",
    }
    assert p.services["web"]["x-note"] == "kept"  # in the model and the YAML, not in Go's JSON
    out = p.to_json_dict()
    assert out["services"]["db"]["networks"] == {"default": None}
    assert out["networks"] == {
        "back": {"external": True, "ipam": {}, "name": "back"},
        "default": {"ipam": {}, "name": "shop_default"},
        "front": {
            "driver": "bridge",
            "ipam": {"config": [{"subnet": "172.30.0.0/24"}]},
            "name": "shop_front",
        },
    }
    assert out["volumes"] == {
        "data": {"labels": {"x": "y"}, "name": "shop_data"},
        "ext": {"external": True, "name": "real-ext"},
    }
    assert out["secrets"] == {"token": {"file": f"{root}/token.txt", "name": "shop_token"}}
    assert out["configs"] == {"conf": {"content": "hello", "name": "shop_conf"}}
    assert p.extensions == {"x-env": {"LOG": "debug"}}
    assert any("external.name is deprecated" in w for w in p.warnings)
    assert any('"TAG"' not in w for w in p.warnings)  # TAG had a default: no warning


def test_json_and_yaml_output(tmp_path: Path) -> None:
    p = load(tmp_path, {"compose.yaml": RICH, "web.env": ""})
    data = json.loads(config_output(p, fmt="json"))
    assert list(data) == ["name", "services", "networks", "volumes", "secrets", "configs"]
    assert data["services"]["db"]["command"] is None and data["services"]["db"]["entrypoint"] is None
    assert "x-note" not in data["services"]["web"]  # Go's json drops extensions
    yml = config_output(p)
    assert yml.startswith("name: shop\nservices:\n  db:\n")
    assert '        published: "8080"\n' in yml
    assert "command: null" not in yml and "ipam: {}" not in yml
    assert "x-env:\n  LOG: debug\n" in yml
    assert config_output(p, services=True) == "db\nweb\n"
    assert config_output(p, volumes=True) == "data\next\n"
    assert config_output(p, images=True) == "postgres:16\nnginx:1.25\n"
    assert config_output(p, quiet=True) == ""


def test_version_1_file_with_services_at_the_top_level(tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    p = load(
        tmp_path / "myapp",
        {
            "docker-compose.yml": """
db:
  image: postgres
web:
  build: .
  command: python manage.py runserver 0.0.0.0:8000
  volumes:
    - .:/code
  ports:
    - "8000:8000"
  links:
    - db
"""
        },
    )
    app = str(tmp_path / "myapp")
    assert p.name == "myapp"
    assert p.to_json_dict() == {
        "name": "myapp",
        "services": {
            "db": {"command": None, "entrypoint": None, "image": "postgres", "networks": {"default": None}},
            "web": {
                "build": {"context": app, "dockerfile": "Dockerfile"},
                "command": ["python", "manage.py", "runserver", "0.0.0.0:8000"],
                "depends_on": {"db": {"condition": "service_started", "required": True, "restart": True}},
                "entrypoint": None,
                "links": ["db"],
                "networks": {"default": None},
                "ports": [{"mode": "ingress", "protocol": "tcp", "published": "8000", "target": 8000}],
                "volumes": [
                    {"bind": {"create_host_path": True}, "source": app, "target": "/code", "type": "bind"}
                ],
            },
        },
        "networks": {"default": {"ipam": {}, "name": "myapp_default"}},
    }
    assert any("version 1 file format" in w for w in p.warnings)


def test_version_1_only_keys_become_their_successors(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "docker-compose.yml": """
web:
  build: ./app
  dockerfile: Dockerfile.dev
  net: host
  log_driver: json-file
  log_opt: {max-size: 10m}
"""
        },
    )
    web = p.services["web"]
    assert web["build"] == {"context": f"{tmp_path}/app", "dockerfile": "Dockerfile.dev"}
    assert web["network_mode"] == "host" and "networks" not in web
    assert web["logging"] == {"driver": "json-file", "options": {"max-size": "10m"}}
    assert p.networks == {}


@pytest.mark.parametrize("version", ["2", "2.4", "3", "3.8"])
def test_version_key_is_ignored_with_a_warning(tmp_path: Path, version: str) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": f"""
version: "{version}"
services:
  web: {{image: busybox, depends_on: {{db: {{condition: service_healthy}}}}}}
  db: {{image: busybox, healthcheck: {{test: ["CMD", "true"]}}}}
"""
        },
    )
    assert p.service_names() == ["db", "web"]
    assert p.warnings == [
        f"{tmp_path}/compose.yaml: the attribute `version` is obsolete, it will be ignored, "
        "please remove it to avoid potential confusion"
    ]


def test_anchors_merge_keys_and_extensions(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": """
x-base: &base
  image: busybox
  restart: always
  environment: &envs
    A: "1"
x-labels: &labels {team: core}
services:
  one:
    <<: *base
    labels: *labels
  two:
    <<: *base
    restart: "no"
    environment:
      <<: *envs
      B: "2"
"""
        },
    )
    assert p.services["one"]["restart"] == "always"
    assert p.services["one"]["labels"] == {"team": "core"}
    assert p.services["two"]["restart"] == "no"
    assert p.services["two"]["environment"] == {"A": "1", "B": "2"}
    assert p.services["one"]["environment"] == {"A": "1"}  # the alias was not shared and mutated


def test_yaml_12_scalars(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": "services:\n  w:\n    image: x\n    ports: [22:22]\n    environment: {A: yes, B: on, C: 2024-01-02}\n"
        },
    )
    assert p.services["w"]["ports"] == [
        {"mode": "ingress", "protocol": "tcp", "published": "22", "target": 22}
    ]
    assert p.services["w"]["environment"] == {"A": "yes", "B": "on", "C": "2024-01-02"}


# --- several files ----------------------------------------------------------------

BASE = """
services:
  web:
    image: a
    command: ["a"]
    ports: ["8080:80"]
    volumes: ["./a:/data", "logs:/logs"]
    environment: {A: "1", B: "2"}
    labels: {x: "1"}
    dns: [1.1.1.1]
    expose: ["80"]
    healthcheck: {test: ["CMD", "a"], interval: 10s}
    depends_on: [db]
    networks: {front: {aliases: [one]}}
  db: {image: pg}
networks: {front: {}}
volumes: {logs: {}}
"""
OVERRIDE = """
services:
  web:
    image: b
    command: ["b", "c"]
    ports: ["8080:80", "9090:90"]
    volumes: ["./b:/data"]
    environment: [B=3, C=4]
    dns: 8.8.8.8
    expose: [80, 81]
    healthcheck: {test: ["CMD", "b"]}
    depends_on: {cache: {condition: service_started}}
    networks: {front: {aliases: [two]}}
  cache: {image: redis}
"""


def test_merge_of_several_files(tmp_path: Path) -> None:
    p = load(tmp_path, {"compose.yaml": BASE, "other.yaml": OVERRIDE}, names=["compose.yaml", "other.yaml"])
    web = p.services["web"]
    assert web["image"] == "b"
    assert web["command"] == ["b", "c"]
    assert web["ports"] == [
        {"mode": "ingress", "protocol": "tcp", "published": "8080", "target": 80},
        {"mode": "ingress", "protocol": "tcp", "published": "9090", "target": 90},
    ]
    assert [v["target"] for v in web["volumes"]] == ["/data", "/logs"]
    assert web["volumes"][0]["source"] == f"{tmp_path}/b"
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["labels"] == {"x": "1"}
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert web["expose"] == ["80", "81"]
    assert web["healthcheck"] == {"test": ["CMD", "b"], "interval": "10s"}
    assert set(web["depends_on"]) == {"db", "cache"}
    assert web["networks"]["front"]["aliases"] == ["one", "two"]
    assert p.service_names() == ["cache", "db", "web"]
    assert p.config_files == [tmp_path / "compose.yaml", tmp_path / "other.yaml"]


def test_override_file_paths_are_relative_to_the_project_directory(tmp_path: Path) -> None:
    write(tmp_path, {"sub/extra.yaml": "services:\n  web:\n    build: ./ctx\n"})
    p = load(
        tmp_path, {"compose.yaml": "services:\n  web: {image: x}\n"}, names=["compose.yaml", "sub/extra.yaml"]
    )
    assert p.services["web"]["build"]["context"] == f"{tmp_path}/ctx"


def test_reset_and_override_tags(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": BASE,
            "o.yaml": """
services:
  web:
    ports: !reset []
    environment: !override {Z: "1"}
    dns: !override [9.9.9.9]
""",
        },
        names=["compose.yaml", "o.yaml"],
    )
    web = p.services["web"]
    assert "ports" not in web
    assert web["environment"] == {"Z": "1"}
    assert web["dns"] == ["9.9.9.9"]


def test_default_override_file_is_merged(tmp_path: Path) -> None:
    p = load(tmp_path, {"compose.yaml": BASE, "compose.override.yaml": OVERRIDE})
    assert p.services["web"]["image"] == "b"
    assert p.config_files == [tmp_path / "compose.yaml", tmp_path / "compose.override.yaml"]


# --- extends ------------------------------------------------------------------------


def test_extends_same_file_and_other_file(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "common/base.yaml": """
services:
  app:
    build: ./src
    env_file: app.env
    environment: {FROM_BASE: "1", SHARED: base}
    ports: ["8000:8000"]
  grand:
    extends: app
    labels: {tier: base}
""",
            "common/app.env": "FROM_ENV_FILE=1\n",
            "compose.yaml": """
services:
  base:
    image: busybox
    command: ["sleep", "1"]
    environment: [A=1]
  child:
    extends: base
    command: ["sleep", "2"]
    environment: [B=2]
  web:
    extends: {file: common/base.yaml, service: grand}
    environment: {SHARED: web}
    ports: ["9000:9000"]
""",
        },
    )
    child = p.services["child"]
    assert child["image"] == "busybox"
    assert child["command"] == ["sleep", "2"]
    assert child["environment"] == {"A": "1", "B": "2"}
    assert "extends" not in child
    web = p.services["web"]
    assert web["build"]["context"] == f"{tmp_path}/common/src"  # relative to the base's file
    assert web["labels"] == {"tier": "base"}
    assert web["environment"] == {"FROM_ENV_FILE": "1", "FROM_BASE": "1", "SHARED": "web"}
    assert [port["published"] for port in web["ports"]] == ["8000", "9000"]


def test_extends_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match='service "nope" not found'):
        load(tmp_path, {"compose.yaml": "services:\n  a: {image: x, extends: nope}\n"})
    with pytest.raises(InvalidArgument, match="circular reference in extends"):
        load(
            tmp_path,
            {"compose.yaml": "services:\n  a: {image: x, extends: b}\n  b: {image: x, extends: a}\n"},
        )
    with pytest.raises(InvalidArgument, match="no such file"):
        load(
            tmp_path, {"compose.yaml": "services:\n  a: {image: x, extends: {file: gone.yaml, service: a}}\n"}
        )


# --- profiles -----------------------------------------------------------------------

PROFILES = """
services:
  web: {image: x}
  debug: {image: x, profiles: [debug]}
  tools: {image: x, profiles: [tools, debug]}
  needs: {image: x, profiles: [extra], depends_on: [debug]}
"""


def test_profiles(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": PROFILES})
    assert load(tmp_path).service_names() == ["web"]
    assert sorted(load(tmp_path).disabled) == ["debug", "needs", "tools"]
    assert load(tmp_path, profiles=["debug"]).service_names() == ["debug", "tools", "web"]
    assert load(tmp_path, env={"COMPOSE_PROFILES": "tools"}).service_names() == ["tools", "web"]
    assert load(tmp_path, profiles=["*"]).service_names() == ["debug", "needs", "tools", "web"]
    assert load(tmp_path, services=["debug"]).service_names() == ["debug", "web"]
    p = load(tmp_path)
    p.enable(["tools"])
    assert p.service_names() == ["tools", "web"]
    assert config_output(p, profiles=True) == "debug\nextra\ntools\n"


def test_enabled_service_requiring_a_disabled_one_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match='"debug" was pulled in as a dependency of service "needs"'):
        load(tmp_path, {"compose.yaml": PROFILES}, profiles=["extra"])


# --- files, directories, names, .env ------------------------------------------------


def test_file_discovery_order_and_parent_directories(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"docker-compose.yml": "services: {a: {image: x}}\n", "compose.yaml": "services: {b: {image: x}}\n"},
    )
    (tmp_path / "deep" / "er").mkdir(parents=True)
    p = load(tmp_path, cwd=tmp_path / "deep" / "er")
    assert p.service_names() == ["b"]
    assert p.working_dir == tmp_path
    assert any("Found multiple config files" in w for w in p.warnings)


def test_no_file_found(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no configuration file provided: not found"):
        load(tmp_path)


def test_compose_file_variable(tmp_path: Path) -> None:
    write(tmp_path, {"a.yml": "services: {a: {image: x}}\n", "b.yml": "services: {b: {image: x}}\n"})
    import os

    p = load(tmp_path, env={"COMPOSE_FILE": f"a.yml{os.pathsep}b.yml"})
    assert p.service_names() == ["a", "b"]
    p = load(tmp_path, env={"COMPOSE_FILE": "a.yml;b.yml", "COMPOSE_PATH_SEPARATOR": ";"})
    assert p.service_names() == ["a", "b"]
    # COMPOSE_FILE may come from .env
    write(tmp_path, {".env": "COMPOSE_FILE=b.yml\n"})
    assert load(tmp_path).service_names() == ["b"]


def test_project_name_precedence_and_normalization(tmp_path: Path) -> None:
    d = tmp_path / "My App.v2"
    d.mkdir()
    write(d, {"compose.yaml": "services: {a: {image: x}}\n"})
    assert load(d).name == "myappv2"
    assert load(d, env={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    assert load(d, project_name="explicit", env={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "explicit"
    write(d, {"compose.yaml": "name: ${PREFIX:-pre}-file\nservices: {a: {image: x}}\n"})
    assert load(d).name == "pre-file"
    assert load(d, env={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    write(d, {".env": "COMPOSE_PROJECT_NAME=dotenv\n"})
    assert load(d).name == "dotenv"
    with pytest.raises(InvalidArgument, match='invalid project name "Bad Name"'):
        load(d, project_name="Bad Name")
    (d / ".env").unlink()
    write(d, {"compose.yaml": "name: UPPER\nservices: {a: {image: x}}\n"})
    with pytest.raises(InvalidArgument, match='invalid project name "UPPER"'):
        load(d)


def test_project_name_is_available_for_interpolation(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {"compose.yaml": "services: {a: {image: x, container_name: '${COMPOSE_PROJECT_NAME}-a'}}\n"},
        project_name="proj",
    )
    assert p.services["a"]["container_name"] == "proj-a"


def test_dotenv_and_process_environment(tmp_path: Path) -> None:
    files = {
        "compose.yaml": 'services:\n  a: {image: "x:${TAG}", environment: [TAG, ONLY_ENV, MISSING]}\n',
        ".env": "TAG=fromfile\nONLY_ENV=dot\n",
    }
    p = load(tmp_path, files)
    assert p.services["a"]["image"] == "x:fromfile"
    assert p.services["a"]["environment"] == {"TAG": "fromfile", "ONLY_ENV": "dot", "MISSING": None}
    assert p.env_files == [tmp_path / ".env"]
    p = load(tmp_path, env={"TAG": "shell"})
    assert p.services["a"]["image"] == "x:shell"  # the process environment wins over .env
    write(tmp_path, {"alt.env": "TAG=alt\n"})
    p = load(tmp_path, env_files=[tmp_path / "alt.env"])
    assert p.services["a"]["image"] == "x:alt"
    assert p.services["a"]["environment"]["ONLY_ENV"] is None  # .env is not read with --env-file


def test_project_directory_option(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"proj/.env": "TAG=p\n", "files/compose.yaml": 'services:\n  a: {image: "x:${TAG}", build: .}\n'},
    )
    p = load(tmp_path, names=["files/compose.yaml"], project_dir=tmp_path / "proj")
    assert p.working_dir == tmp_path / "proj"
    assert p.name == "proj"
    assert p.services["a"]["image"] == "x:p"
    assert p.services["a"]["build"]["context"] == f"{tmp_path}/proj"


def test_unset_variable_warning(tmp_path: Path) -> None:
    p = load(tmp_path, {"compose.yaml": 'services: {a: {image: "x${NOPE}"}}\n'})
    assert p.services["a"]["image"] == "x"
    assert 'The "NOPE" variable is not set. Defaulting to a blank string.' in p.warnings


def test_stdin_file(tmp_path: Path) -> None:
    p = load_project([Path("-")], None, "s", {}, [], cwd=tmp_path, stdin="services: {a: {image: x}}\n")
    assert p.service_names() == ["a"] and p.working_dir == tmp_path


def test_env_file_optional_and_missing(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": "services:\n  a:\n    image: x\n    env_file: [{path: gone.env, required: false}]\n"
        },
    )
    assert "environment" not in p.services["a"]
    with pytest.raises(InvalidArgument, match=r"gone\.env not found"):
        load(tmp_path, {"compose.yaml": "services:\n  a: {image: x, env_file: gone.env}\n"})


def test_include(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "lib/compose.yaml": "services:\n  db: {image: pg, build: .}\nvolumes: {data: {}}\n",
            "compose.yaml": "include: [lib/compose.yaml]\nservices:\n  web: {image: x, depends_on: [db]}\n",
        },
    )
    assert p.service_names() == ["db", "web"]
    assert p.services["db"]["build"]["context"] == f"{tmp_path}/lib"
    assert p.volumes == {"data": {"name": f"{p.name}_data"}}


# --- normalization details ----------------------------------------------------------


def test_implied_dependencies_and_network_mode(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": """
services:
  a: {image: x}
  b: {image: x, network_mode: "service:a", volumes_from: [a, "container:other"]}
  c: {image: x, links: ["a:alias"]}
  d: {image: x, network_mode: host}
"""
        },
    )
    assert p.services["b"]["depends_on"] == {
        "a": {"condition": "service_started", "required": True, "restart": True}
    }
    assert "networks" not in p.services["b"] and "networks" not in p.services["d"]
    assert p.services["c"]["depends_on"]["a"]["condition"] == "service_started"


def test_port_and_volume_short_syntax_edge_cases(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": """
services:
  a:
    image: x
    ports:
      - "3000-3001"
      - "9090-9091:8080"
      - "[::1]:53:53/udp"
      - 10000:10000
      - 9000:9000
    volumes:
      - "data:/data:ro,nocopy"
      - "/host:/c:rw,z,rshared"
volumes: {data: {}}
"""
        },
    )
    ports = p.services["a"]["ports"]
    assert ports[0] == {"mode": "ingress", "protocol": "tcp", "target": 3000}
    assert ports[1] == {"mode": "ingress", "protocol": "tcp", "target": 3001}
    assert ports[2] == {"mode": "ingress", "protocol": "tcp", "published": "9090-9091", "target": 8080}
    assert ports[3] == {
        "host_ip": "::1",
        "mode": "ingress",
        "protocol": "udp",
        "published": "53",
        "target": 53,
    }
    vols = p.services["a"]["volumes"]
    assert vols[0] == {
        "type": "volume",
        "source": "data",
        "target": "/data",
        "read_only": True,
        "volume": {"nocopy": True},
    }
    assert vols[1] == {
        "type": "bind",
        "source": "/host",
        "target": "/c",
        "bind": {"selinux": "z", "propagation": "rshared", "create_host_path": True},
    }


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("10s", "10s"),
        ("1m", "1m0s"),
        ("1.5s", "1.5s"),
        ("100ms", "100ms"),
        ("2h30m", "2h30m0s"),
        ("0", "0s"),
        ("1m0.5s", "1m0.5s"),
    ],
)
def test_durations_are_printed_as_go_does(tmp_path: Path, value: str, want: str) -> None:
    p = load(tmp_path, {"compose.yaml": f"services: {{a: {{image: x, stop_grace_period: '{value}'}}}}\n"})
    assert p.services["a"]["stop_grace_period"] == want


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: {web: {image: x, foo: 1}}", "services.web Additional property foo is not allowed"),
        ("foo: 1\nservices: {web: {image: x}}", "(root) Additional property foo is not allowed"),
        ("services: {web: {image: x, ports: 80}}", "services.web.ports must be a list"),
        ("services: {web: {image: x, privileged: 1}}", "services.web.privileged must be a boolean"),
        ("services: {web: {image: 5}}", "services.web.image must be a string"),
        ("services: {web: {image: x, build: 5}}", "services.web.build must be a string or mapping"),
        (
            "services: {web: {image: x, ports: [{targt: 80}]}}",
            "services.web.ports.0 Additional property targt is not allowed",
        ),
        (
            "services: {web: {image: x, depends_on: {db: {condition: started}}}, db: {image: x}}",
            'services.web.depends_on.db.condition must be one of the following: "service_started", '
            '"service_healthy", "service_completed_successfully"',
        ),
        (
            "services: {web: {image: x, volumes: [{source: a, target: /b}]}}",
            "services.web.volumes.0 type is required",
        ),
        (
            "services: {web: {image: x, environment: {A: [1]}}}",
            "services.web.environment.A must be a string, number, boolean or null",
        ),
        (
            "services: {web: {image: x}}\nnetworks: {n: {drivr: x}}",
            "networks.n Additional property drivr is not allowed",
        ),
        (
            "services: {web: {image: x, deploy: {replicas: two}}}",
            "error while interpolating services.web.deploy.replicas",
        ),
        (
            "services: {web: {image: x, healthcheck: {intervl: 1s}}}",
            "services.web.healthcheck Additional property intervl is not allowed",
        ),
        ("services: {web: {image: x, ulimits: {nofile: {soft: 1}}}}", "services.web.ulimits.nofile"),
        ("services: [web]", "services must be a mapping or null"),
    ],
)
def test_validation_messages_name_file_and_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        load(tmp_path, {"compose.yaml": text + "\n"})
    assert message in str(exc.value)
    assert str(tmp_path / "compose.yaml") in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "services: {web: {image: x, stop_grace_period: '10'}}",
            'services.web.stop_grace_period: time: missing unit in duration "10"',
        ),
        (
            "services: {web: {image: x, stop_grace_period: 10}}",
            "services.web.stop_grace_period must be a string",
        ),
        ("services: {web: {image: x, stop_grace_period: 1d}}", 'unknown unit "d" in duration "1d"'),
        (
            "services: {web: {image: x, ports: ['80:abc']}}",
            "services.web.ports.0: invalid containerPort: abc",
        ),
        (
            "services: {web: {image: x, ports: ['1-3:4-5']}}",
            "invalid ranges specified for container and host Ports",
        ),
        (
            "services: {web: {image: x, volumes: ['a:b:c:d']}}",
            "services.web.volumes.0: invalid spec: a:b:c:d: too many colons",
        ),
        ("services: {web: {image: x, mem_limit: lots}}", "services.web.mem_limit: invalid size: 'lots'"),
        (
            "services: {web: {image: x, command: 'echo \"unclosed'}}",
            "services.web.command: invalid command line string",
        ),
        ("services: {web: {image: x}}\nservices: {}", 'mapping key "services" already defined at line 1'),
        ("services:\n  web: {image: x\n", "yaml: line"),
        ("- a", "Top-level object must be a mapping"),
        ("services: {web: {image: '${'}}", "invalid interpolation format for services.web.image"),
    ],
)
def test_syntax_errors_name_file_and_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        load(tmp_path, {"compose.yaml": text + "\n"})
    assert message in str(exc.value)
    assert str(tmp_path / "compose.yaml") in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "services: {web: {image: x, depends_on: [db]}}",
            'service "web" depends on undefined service "db": invalid compose project',
        ),
        ("services: {web: {image: x, links: [db]}}", 'service "web" depends on undefined service "db"'),
        (
            "services: {web: {image: x, networks: [front]}}",
            'service "web" refers to undefined network front: invalid compose project',
        ),
        (
            "services: {web: {image: x, volumes: ['data:/d']}}",
            'service "web" refers to undefined volume data: invalid compose project',
        ),
        (
            "services: {web: {image: x, secrets: [s]}}",
            'service "web" refers to undefined secret s: invalid compose project',
        ),
        (
            "services: {web: {command: [x]}}",
            'service "web" has neither an image nor a build context specified',
        ),
        (
            "services: {web: {image: x, network_mode: host, networks: [n]}}\nnetworks: {n: {}}",
            "service web declares mutually exclusive `network_mode` and `networks`",
        ),
        (
            "services: {web: {image: x, container_name: c, deploy: {replicas: 2}}}",
            "services.web: can't set container_name and web as container name must be unique",
        ),
        (
            "services: {web: {image: x, scale: 2, deploy: {replicas: 3}}}",
            "can't set distinct values on 'scale' and 'deploy.replicas'",
        ),
    ],
)
def test_consistency_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        load(tmp_path, {"compose.yaml": text + "\n"})
    assert message in str(exc.value)


def test_optional_dependency_on_a_missing_service_is_dropped(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        {
            "compose.yaml": "services: {web: {image: x, depends_on: {db: {condition: service_started, required: false}}}}\n"
        },
    )
    assert "depends_on" not in p.services["web"] or p.services["web"]["depends_on"] == {}
