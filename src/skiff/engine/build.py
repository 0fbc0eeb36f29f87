"""BuildService: Dockerfile builds with Docker's classic builder semantics and output.

A build is two calls. :meth:`BuildService.prepare` unpacks the context into a private
directory under ``<root>/builds/`` and parses the Dockerfile; anything wrong there is an
error *before* the response starts (HTTP 400/404, as dockerd answers). :meth:`BuildService.run`
then executes the stages up to the target, reporting through a :class:`BuildOutput`.

Every step makes an image (config blob + metadata row, parent = the previous step's image),
exactly as Docker's classic builder keeps intermediate images: a later build, a ``--target``
or a ``COPY --from`` can reuse any of them, and an interrupted build leaves only complete
images behind. The cache is a table in the metadata DB, ``(parent image, step key) -> image``,
so it survives restarts and its rows go with their image (``ON DELETE CASCADE``). The key is
the step's history text (which holds what Docker's holds: the substituted instruction, the
ARGs in effect for RUN, the content hash of ADD/COPY sources) plus COPY's flags.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Protocol

from skiff.build.context import BuildContext, Source, content_hash, resolve_sources
from skiff.build.copy import copy_into, download
from skiff.build.dispatch import (
    BuildArgs,
    StageState,
    apply_metadata,
    command_line,
    declare_args,
    meta_args,
    nop_created_by,
    run_created_by,
    workdir,
)
from skiff.build.fs import ensure_dir
from skiff.build.instructions import (
    Arg,
    Command,
    Copy,
    Dockerfile,
    From,
    Instruction,
    KeyValues,
    Stage,
    Value,
    parse_dockerfile,
    parse_trigger,
)
from skiff.build.parser import HEREDOC_MARKER, Node
from skiff.build.shell import ShellLex
from skiff.engine.build_steps import StepRunner, finish_in_thread
from skiff.engine.containers import ContainerService
from skiff.engine.images import ImageService
from skiff.errors import Conflict, InvalidArgument, NotFound, SkiffError
from skiff.fs.scoped import resolve_in_root
from skiff.images.imagestore import ImageStore, utc_now
from skiff.images.reference import normalize_tag
from skiff.registry.auth import AuthConfig
from skiff.store.metadata import MetadataDB
from skiff.store.mount import unmount
from skiff.types import ContainerSpec, HealthConfig, HistoryEntry, HostConfig, ImageConfig, ImageRecord

_CACHE_VERSION = "skiff-build-1"
# On RUN containers, so that startup recovery can tell an interrupted build's container.
BUILD_LABEL = "com.skiff.build.step"
_DOWNLOAD_LIMIT = 4 * 1024**3


@dataclass(frozen=True)
class BuildOptions:
    """The query parameters of ``POST /build`` (``docker build`` flags), typed."""

    tags: tuple[str, ...] = ()
    dockerfile: str = ""
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    cache_from: tuple[str, ...] = ()
    network_mode: str = ""
    remove: bool = True
    force_remove: bool = False
    extra_hosts: tuple[str, ...] = ()
    shm_size: int = 0
    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    platform: str = ""
    squash: bool = False
    registry_auth: dict[str, AuthConfig] = field(default_factory=dict)  # X-Registry-Config


# Pulls a base image that is not present (DistributionService.pull_for_build); None: no registry.
Puller = Callable[[str, dict[str, AuthConfig], "BuildOutput"], Awaitable[ImageRecord]]


class BuildOutput(Protocol):
    """Where a build reports: Docker's ``stream`` text, split by origin."""

    async def stdout(self, text: str) -> None: ...

    async def stderr(self, text: str) -> None: ...


@dataclass
class BuildJob:
    """A prepared build: its directory, context, parsed Dockerfile and options."""

    directory: Path
    context: BuildContext
    dockerfile: Dockerfile
    options: BuildOptions
    tags: tuple[str, ...]
    stages: tuple[Stage, ...]
    cache_allowed: frozenset[str] | None  # None: any local image may serve as cache


@dataclass
class _Current:
    """The stage being built: its newest image (None: FROM scratch, nothing yet) and state."""

    image: ImageRecord | None
    state: StageState


class BuildService:
    """Builds images from Dockerfiles (``POST /build``) and prunes the build cache."""

    def __init__(
        self,
        root: Path,
        db: MetadataDB,
        store: ImageStore,
        images: ImageService,
        containers: ContainerService,
    ) -> None:
        self.dir = root / "builds"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.store = store
        self.images = images
        self.containers = containers
        self.steps = StepRunner(store, store.snapshotter, containers)
        self.puller: Puller | None = None  # set by the engine once a registry client exists

    # -- preparing -----------------------------------------------------------------------------

    async def prepare(self, body: BinaryIO, options: BuildOptions) -> BuildJob:
        """Unpack the context and parse the Dockerfile; every error here precedes any output."""
        if options.squash:
            raise InvalidArgument("squash is only supported with experimental mode")
        if options.platform and options.platform.split("/")[0] not in ("linux", ""):
            raise InvalidArgument(
                f'"{options.platform}": unknown operating system or architecture: invalid argument'
            )
        tags = tuple(normalize_tag(t) for t in options.tags)
        directory = Path(tempfile.mkdtemp(prefix="job-", dir=self.dir))
        try:
            context = await finish_in_thread(lambda: BuildContext.unpack(body, directory / "context"))
            text, name = context.read_dockerfile(options.dockerfile)
            dockerfile = parse_dockerfile(text, name)
            context.drop_ignored(name)
            stages = dockerfile.stages
            if options.target:
                index = dockerfile.stage_index(options.target)
                if index is None:
                    raise InvalidArgument(f"failed to reach build target {options.target} in Dockerfile")
                stages = stages[: index + 1]
            if options.labels:
                stages = (*stages[:-1], _with_labels(stages[-1], options.labels, dockerfile.escape))
            return BuildJob(
                directory=directory,
                context=context,
                dockerfile=dockerfile,
                options=options,
                tags=tags,
                stages=stages,
                cache_allowed=self._cache_sources(options.cache_from) if options.cache_from else None,
            )
        except BaseException:
            self.discard_directory(directory)
            raise

    def _cache_sources(self, refs: tuple[str, ...]) -> frozenset[str]:
        """``--cache-from`` images and their ancestors: the only images a step may reuse then."""
        allowed: set[str] = set()
        for ref in refs:
            try:
                image: ImageRecord | None = self.store.get(ref)
            except (NotFound, InvalidArgument):
                continue
            while image is not None and image.id not in allowed:
                allowed.add(image.id)
                try:
                    image = self.db.get_image(image.parent) if image.parent else None
                except NotFound:
                    image = None
        return frozenset(allowed)

    def discard(self, job: BuildJob) -> None:
        """Delete the job's directory (its context, downloads and mount points)."""
        self.discard_directory(job.directory)

    @staticmethod
    def discard_directory(directory: Path) -> None:
        for entry in directory.glob("*-*"):
            if entry.is_dir() and entry.name.startswith(("root-", "view-")):
                unmount(entry)
        shutil.rmtree(directory, ignore_errors=True)

    async def recover(self) -> None:
        """Startup, after container recovery and before the image store's GC: remove what
        builds interrupted by a crash left: RUN containers still running or never started
        (no build survives a restart; exited ones stay, as Docker keeps them), the jobs'
        directories and the file steps' snapshots."""
        for c in self.containers.list():
            if c.spec.labels.get(BUILD_LABEL) and c.state.status != "exited":
                with contextlib.suppress(SkiffError):
                    await self.containers.remove(c.id, force=True, volumes=True)
        for entry in self.dir.iterdir():
            self.discard_directory(entry)
        self.steps.recover()

    # -- running -------------------------------------------------------------------------------

    async def run(self, job: BuildJob, out: BuildOutput) -> str:
        """Execute the stages; returns the image ID (tags applied). Errors raise mid-stream."""
        lex = ShellLex(job.dockerfile.escape)
        build_args = BuildArgs(job.options.build_args)
        meta = meta_args(job.dockerfile.meta_args, build_args, lex)
        total = sum(1 + len(s.instructions) for s in job.stages)
        results: list[ImageRecord | None] = []
        step = 0
        current: _Current | None = None
        for stage in job.stages:
            step += 1
            await out.stdout(f"Step {step}/{total} : {stage.from_.text}\n")
            current = await self._from(job, stage, results, meta, lex, build_args, out)
            for instruction in stage.instructions:
                step += 1
                await out.stdout(f"Step {step}/{total} : {instruction.text}\n")
                await self._step(job, current, instruction, results, lex, build_args, meta, out)
            results.append(current.image)
        assert current is not None
        final = current.image
        if final is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        unused = build_args.unconsumed()
        if unused:
            await out.stdout(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        for tag in job.tags:
            self.images.tag(final.id, tag)
        return final.id

    async def _from(
        self,
        job: BuildJob,
        stage: Stage,
        results: list[ImageRecord | None],
        meta: dict[str, str | None],
        lex: ShellLex,
        build_args: BuildArgs,
        out: BuildOutput,
    ) -> _Current:
        base_name = lex.process_word(stage.from_.base, {k: v for k, v in meta.items() if v is not None})
        if not base_name:
            raise InvalidArgument(f"base name ({stage.from_.base}) should not be blank")
        image: ImageRecord | None
        index = job.dockerfile.stage_index(base_name)
        if index is not None and index < len(results):
            image = results[index]
        elif base_name.lower() == "scratch":
            image = None
        else:
            try:
                image = self.store.get(base_name)
            except NotFound:
                if self.puller is None:
                    raise
                image = await self.puller(base_name, job.options.registry_auth, out)
        config = image.config if image is not None else ImageConfig()
        current = _Current(image, StageState.begin(config))
        if image is not None:
            await out.stdout(f" ---> {_short(image.id)}\n")
        triggers = config.on_build
        if triggers:
            noun = "trigger" if len(triggers) == 1 else "triggers"
            await out.stdout(f"# Executing {len(triggers)} build {noun}\n")
            for trigger in triggers:
                instruction = parse_trigger(trigger, job.dockerfile.escape)
                await self._step(job, current, instruction, results, lex, build_args, meta, out)
        return current

    async def _step(
        self,
        job: BuildJob,
        cur: _Current,
        instruction: Instruction,
        results: list[ImageRecord | None],
        lex: ShellLex,
        build_args: BuildArgs,
        meta: dict[str, str | None],
        out: BuildOutput,
    ) -> None:
        if isinstance(instruction, Command) and instruction.keyword == "RUN":
            await self._run(job, cur, instruction, build_args, out)
        elif isinstance(instruction, Copy):
            await self._copy(job, cur, instruction, results, lex, build_args, out)
        elif isinstance(instruction, Value) and instruction.keyword == "WORKDIR":
            await self._workdir(job, cur, instruction, lex, build_args, out)
        elif isinstance(instruction, Arg):
            comment = declare_args(cur.state, instruction, build_args, meta, lex)
            await self._metadata(job, cur, comment, out)
        elif isinstance(instruction, From):
            raise InvalidArgument("FROM isn't allowed as an ONBUILD trigger")
        else:
            if isinstance(instruction, Value) and instruction.keyword == "STOPSIGNAL":
                _check_signal(lex.process_word(instruction.value, cur.state.expansion_env(build_args)))
            comment = apply_metadata(cur.state, instruction, build_args, lex)
            await self._metadata(job, cur, comment, out)

    # -- cache ---------------------------------------------------------------------------------

    @staticmethod
    def _key(created_by: str, extra: str = "") -> str:
        return hashlib.sha256(json.dumps([_CACHE_VERSION, created_by, extra]).encode()).hexdigest()

    def _cached(self, job: BuildJob, cur: _Current, key: str) -> ImageRecord | None:
        if job.options.no_cache:
            return None
        parent = cur.image.id if cur.image is not None else ""
        image_id = self.db.build_cache_get(parent, key)
        if image_id is None:
            return None
        if job.cache_allowed is not None and image_id not in job.cache_allowed:
            return None
        try:
            return self.db.get_image(image_id)
        except NotFound:
            return None

    async def _use_cache(self, job: BuildJob, cur: _Current, key: str, out: BuildOutput) -> bool:
        hit = self._cached(job, cur, key)
        if hit is None:
            return False
        await self._take(cur, hit, out)
        return True

    @staticmethod
    async def _take(cur: _Current, hit: ImageRecord, out: BuildOutput) -> None:
        """Continue from a cached step's image (its config is what this step would make)."""
        cur.image = hit
        cur.state.config = hit.config
        cur.state.author = hit.author
        await out.stdout(f" ---> Using cache\n ---> {_short(hit.id)}\n")

    async def _commit(
        self, job: BuildJob, cur: _Current, created_by: str, diff_id: str | None, key: str, out: BuildOutput
    ) -> None:
        parent = cur.image
        entry = HistoryEntry(created=utc_now(), created_by=created_by, empty_layer=diff_id is None)
        diff_ids = parent.diff_ids if parent is not None else ()
        history = parent.history if parent is not None else ()
        if diff_id is not None:
            diff_ids = (*diff_ids, diff_id)
        config, author = cur.state.config, cur.state.author

        def write() -> ImageRecord:
            image = self.store.create_image(
                config,
                diff_ids,
                history=(*history, entry),
                author=author,
                parent=parent.id if parent is not None else "",
                created=entry.created,
            )
            self.db.put_build_cache(parent.id if parent is not None else "", key, image.id)
            return image

        cur.image = await finish_in_thread(write)
        await out.stdout(f" ---> {_short(cur.image.id)}\n")

    # -- steps ---------------------------------------------------------------------------------

    async def _metadata(self, job: BuildJob, cur: _Current, comment: str, out: BuildOutput) -> None:
        created_by = nop_created_by(cur.state, comment)
        key = self._key(created_by)
        if await self._use_cache(job, cur, key, out):
            return
        await self._commit(job, cur, created_by, None, key, out)

    async def _run(
        self, job: BuildJob, cur: _Current, instruction: Command, build_args: BuildArgs, out: BuildOutput
    ) -> None:
        argv = command_line(cur.state, instruction)
        created_by = run_created_by(cur.state, argv, build_args)
        key = self._key(created_by)
        if await self._use_cache(job, cur, key, out):
            return
        if cur.image is None:
            raise InvalidArgument("cannot RUN in an empty image: the stage is FROM scratch with no files yet")
        opts = job.options
        config = cur.state.config
        spec = ContainerSpec(
            image=cur.image.id,
            cmd=argv,
            entrypoint=("",),
            env=(*config.env, *cur.state.run_env(build_args)),
            user=config.user,
            working_dir=config.working_dir,
            healthcheck=HealthConfig(test=("NONE",)),
            labels={BUILD_LABEL: "true"},
            host=HostConfig(
                network_mode=opts.network_mode or "default",
                extra_hosts=opts.extra_hosts,
                shm_size=opts.shm_size,
                memory=opts.memory,
                memory_swap=opts.memory_swap,
                cpu_shares=opts.cpu_shares,
                cpu_period=opts.cpu_period,
                cpu_quota=opts.cpu_quota,
                cpuset_cpus=opts.cpuset_cpus,
                cpuset_mems=opts.cpuset_mems,
            ),
        )

        async def started(cid: str) -> None:
            await out.stdout(f" ---> Running in {cid[:12]}\n")

        async def output(stream: int, data: bytes) -> None:
            text = data.decode(errors="replace")
            await (out.stderr(text) if stream == 2 else out.stdout(text))

        async def removed(cid: str) -> None:
            await out.stdout(f"Removing intermediate container {cid[:12]}\n")

        diff_id = await self.steps.run(
            spec, cur.image, started, output, opts.remove, opts.force_remove, removed
        )
        await self._commit(job, cur, created_by, diff_id, key, out)

    async def _workdir(
        self,
        job: BuildJob,
        cur: _Current,
        instruction: Value,
        lex: ShellLex,
        build_args: BuildArgs,
        out: BuildOutput,
    ) -> None:
        path = workdir(cur.state, instruction.value, build_args, lex)
        created_by = nop_created_by(cur.state, f"WORKDIR {path}")
        key = self._key(created_by)
        if await self._use_cache(job, cur, key, out):
            return
        image = cur.image

        def mkdir(root: Path) -> None:
            ensure_dir(root, path)

        def make() -> str | None:
            # Docker makes a missing WORKDIR (a layer); an existing one costs nothing.
            with self.steps.view(job.directory, image) as root:
                if resolve_in_root(root, path).is_dir():
                    return None
            return self.steps.change(job.directory, image, mkdir)

        diff_id = await finish_in_thread(make)
        await self._commit(job, cur, created_by, diff_id, key, out)

    async def _copy(
        self,
        job: BuildJob,
        cur: _Current,
        instruction: Copy,
        results: list[ImageRecord | None],
        lex: ShellLex,
        build_args: BuildArgs,
        out: BuildOutput,
    ) -> None:
        what = instruction.keyword
        env = cur.state.expansion_env(build_args)
        sources = [lex.process_word(s, env) for s in instruction.sources]
        dest = lex.process_word(instruction.dest, env)
        chown = lex.process_word(instruction.chown, env) if instruction.chown else ""
        chmod = int(instruction.chmod, 8) if instruction.chmod else None
        source_image: ImageRecord | None = None
        from_stage = bool(instruction.from_)
        if from_stage:
            source_image = await self._copy_source(
                job, lex.process_word(instruction.from_, env), results, out
            )
        inline = self._inline_files(job, instruction, lex, env)
        sources = [s for raw, s in zip(instruction.sources, sources, strict=True) if raw not in inline]
        urls = [s for s in sources if instruction.add and _is_url(s)]
        local = [s for s in sources if s not in urls]
        downloads = [await self._download(job, u, dest) for u in urls] + list(inline.values())
        image = cur.image
        state = cur.state
        flags = json.dumps([chown, instruction.chmod, instruction.from_])

        def work(root: Path) -> tuple[str, str, ImageRecord | None, str | None]:
            found = resolve_sources(root, local, what) if local else []
            found += downloads
            if len(found) > 1 and not dest.endswith("/"):
                raise InvalidArgument(
                    f"When using {what} with more than one source file, the destination must be a "
                    "directory and end with a /"
                )
            created_by = nop_created_by(state, f"{what} {content_hash(found)} in {dest} ")
            key = self._key(created_by, flags)
            hit = self._cached(job, cur, key)
            if hit is not None:
                return created_by, key, hit, None
            diff = self.steps.change(
                job.directory,
                image,
                lambda target: copy_into(
                    target,
                    found,
                    dest,
                    state.config.working_dir,
                    chown,
                    chmod,
                    instruction.add,
                    set(downloads),
                ),
            )
            return created_by, key, None, diff

        def in_thread() -> tuple[str, str, ImageRecord | None, str | None]:
            if from_stage:
                with self.steps.view(job.directory, source_image) as root:
                    return work(root)
            return work(job.context.root)

        created_by, key, hit, diff_id = await finish_in_thread(in_thread)
        if hit is not None:
            await self._take(cur, hit, out)
            return
        await self._commit(job, cur, created_by, diff_id, key, out)

    @staticmethod
    def _inline_files(
        job: BuildJob, instruction: Copy, lex: ShellLex, env: dict[str, str]
    ) -> dict[str, Source]:
        """``COPY <<EOF /dest``: each here-document source as a file (0644), keyed by its marker.

        Variables in the document are expanded unless its delimiter was quoted (BuildKit's rule).
        """
        documents = {h.name: h for h in instruction.node.heredocs}
        out: dict[str, Source] = {}
        for raw in instruction.sources:
            marker = HEREDOC_MARKER.fullmatch(raw)
            if marker is None or marker.group(3) not in documents:
                continue
            doc = documents[marker.group(3)]
            text = lex.expand_document(doc.content, env) if doc.expand else doc.content
            path = Path(tempfile.mkdtemp(prefix="heredoc-", dir=job.directory)) / doc.name
            path.write_text(text)
            path.chmod(0o644)
            out[raw] = Source(path, doc.name, False)
        return out

    async def _copy_source(
        self, job: BuildJob, name: str, results: list[ImageRecord | None], out: BuildOutput
    ) -> ImageRecord | None:
        if name.isdigit():
            index = int(name)
            if index >= len(results):
                raise InvalidArgument(
                    f"invalid from flag value {name}: refers to current or a later build stage"
                )
            return results[index]
        index_by_name = job.dockerfile.stage_index(name)
        if index_by_name is not None:
            if index_by_name >= len(results):
                raise InvalidArgument(
                    f"invalid from flag value {name}: refers to current or a later build stage"
                )
            return results[index_by_name]
        try:
            return self.store.get(name)
        except NotFound:
            if self.puller is None:
                raise NotFound(f"invalid from flag value {name}: the image is not present locally") from None
            return await self.puller(name, job.options.registry_auth, out)

    async def _download(self, job: BuildJob, url: str, dest: str) -> Source:
        """ADD <url>: fetched into the job's directory."""
        directory = Path(tempfile.mkdtemp(prefix="download-", dir=job.directory))
        return await finish_in_thread(lambda: download(url, directory, dest))

    # -- prune ---------------------------------------------------------------------------------

    async def prune(self) -> tuple[list[str], int]:
        """Forget the build cache and delete the untagged step images nothing else needs."""
        candidates = set(self.db.clear_build_cache())
        deleted: list[str] = []
        reclaimed = 0
        progress = True
        while progress:
            progress = False
            images = self.store.list()
            parents = {i.parent for i in images if i.parent}
            for image in images:
                if image.id not in candidates or image.repo_tags or image.id in parents:
                    continue
                sizes = {c: self.db.layer_size(c) or 0 for c in image.chain_ids}
                try:
                    self.images.remove(image.id)
                except (Conflict, NotFound):
                    continue
                reclaimed += sum(size for c, size in sizes.items() if not self.store.has_layer(c))
                deleted.append(image.id)
                progress = True
        return deleted, reclaimed


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _check_signal(value: str) -> None:
    name = value.upper()
    if name.isdigit():
        if 0 < int(name) < 65:
            return
    else:
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name in signal.Signals.__members__ or name.startswith("SIGRTM"):
            return
    raise InvalidArgument(f"Invalid signal: {value}")


def _with_labels(stage: Stage, labels: dict[str, str], escape: str) -> Stage:
    """``--label``: one more LABEL at the end of the last stage, as Docker appends it."""

    def quote(text: str) -> str:
        return "'" + text.replace("'", f"'{escape}''") + "'"

    pairs = tuple((quote(k), quote(v)) for k, v in sorted(labels.items()))
    text = "LABEL " + " ".join(f"{json.dumps(k)}='{v}'" for k, v in sorted(labels.items()))
    node = Node(keyword="LABEL", args=tuple(x for p in pairs for x in p), original=text)
    return replace(stage, instructions=(*stage.instructions, KeyValues(node, pairs=pairs)))
