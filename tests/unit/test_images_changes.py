"""--change instructions applied to an image config."""

from __future__ import annotations

import pytest

from skiff.errors import InvalidArgument
from skiff.images.changes import apply_changes
from skiff.types.image import ImageConfig


def test_cmd_exec_and_shell_form() -> None:
    assert apply_changes(ImageConfig(), ['CMD ["echo", "hi"]']).cmd == ("echo", "hi")
    assert apply_changes(ImageConfig(), ["CMD echo hi"]).cmd == ("/bin/sh", "-c", "echo hi")
    # Not valid JSON: shell form, as in a Dockerfile.
    assert apply_changes(ImageConfig(), ["CMD [echo]"]).cmd == ("/bin/sh", "-c", "[echo]")


def test_entrypoint_resets_inherited_cmd_but_not_one_set_before() -> None:
    base = ImageConfig(cmd=("sh",))
    assert apply_changes(base, ['ENTRYPOINT ["top"]']) == ImageConfig(entrypoint=("top",), cmd=None)
    c = apply_changes(base, ["CMD -b", "ENTRYPOINT top"])
    assert c.entrypoint == ("/bin/sh", "-c", "top")
    assert c.cmd == ("/bin/sh", "-c", "-b")


def test_env_both_forms_and_override() -> None:
    c = apply_changes(ImageConfig(env=("A=1", "PATH=/bin")), ['ENV A=2 B="x y"', "ENV C hello world"])
    assert c.env == ("PATH=/bin", "A=2", "B=x y", "C=hello world")


def test_label_expose_volume_user_workdir_stopsignal_onbuild() -> None:
    c = apply_changes(
        ImageConfig(working_dir="/app"),
        [
            'LABEL a=b "c d"=e',
            "EXPOSE 80 53/udp 8000-8002",
            'VOLUME ["/data", "/logs"]',
            "VOLUME /cache",
            "USER www-data",
            "WORKDIR sub",
            "STOPSIGNAL SIGQUIT",
            "ONBUILD RUN make",
            "expose 80",
        ],
    )
    assert c.labels == {"a": "b", "c d": "e"}
    assert c.exposed_ports == ("80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp")
    assert c.volumes == ("/data", "/logs", "/cache")
    assert c.user == "www-data"
    assert c.working_dir == "/app/sub"
    assert c.stop_signal == "SIGQUIT"
    assert c.on_build == ("RUN make",)


def test_workdir_absolute_replaces() -> None:
    assert apply_changes(ImageConfig(working_dir="/app"), ["WORKDIR /srv"]).working_dir == "/srv"


def test_input_config_unchanged() -> None:
    base = ImageConfig(env=("A=1",), labels={"x": "y"})
    apply_changes(base, ["ENV A=2", "LABEL x=z"])
    assert base.env == ("A=1",)
    assert base.labels == {"x": "y"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("RUNN echo", "dockerfile parse error line 1: unknown instruction: RUNN"),
        ("RUN echo", "run is not a valid change command"),
        ("FROM busybox", "from is not a valid change command"),
        ("CMD", "CMD requires at least one argument"),
        ("ENV A", "ENV must have two arguments"),
        ("EXPOSE http", "invalid containerPort: http"),
        ("EXPOSE 70000", "invalid range"),
        ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"),
        ('ENV A="unterminated', "dockerfile parse error"),
    ],
)
def test_bad_changes(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        apply_changes(ImageConfig(), [change])
    assert message in str(e.value)
