"""The "swarm" workflow runtime: a Compose project as the services of a Docker Swarm.

Like `docker stack deploy`, a project becomes a stack: one Swarm service per Compose
service (`<project>_<service>`), overlay networks, secrets and configs, all labelled
`com.docker.stack.namespace=<project>` (so `docker stack ls/services/ps` show it) and
with this engine's owner labels. Unlike it, dxflow keeps what Swarm drops:

- dependency order with its gates: a service is created only when the services it
  depends on are running (`service_started`), healthy (`service_healthy`: Swarm holds a
  task with a health check in `starting` until it passes) or done
  (`service_completed_successfully`);
- one-shot services run as Swarm jobs (`replicated-job`);
- builds: an image built here is pushed to the engine's `registry` for every node;
- an image no node can run, or a placement no node satisfies, fails `up` with the key,
  the nodes and the fix, instead of tasks piling up or pending for ever.

Every service is created from a whole spec (`_swarm_spec`), so `scale` and an `update`
that changes nothing of a service leave its tasks alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio

from ..._exceptions import ApiError, Conflict, InvalidRequest, NotFound, WorkflowFailed
from ..._models import (
    ComposeProject,
    ComposeProjectSummary,
    ContainerState,
    ContainerStats,
    ContainerTop,
    ExecResult,
    LogLine,
    Service,
    WorkflowEvent,
    WorkflowStatus,
)
from .._docker import DockerAdapter, ExecCommand, SwarmService, SwarmTask
from .._groups import task_group
from ._docker_runtime import DockerRuntime
from ._orchestrator import Orchestrator
from ._owners import Owners
from ._runtime import Action, Emit, Plan
from ._spec import ENGINE_LABEL, SERVICE_LABEL, WORKFLOW_LABEL, image_of
from ._swarm_checks import binds, older, raise_failed_job, raise_stuck, volume_names
from ._swarm_view import HASH, service_name, snapshot, workflow_status
from ._swarm_view import events as swarm_events
from ._swarm_view import logs as swarm_logs

__all__ = ["SwarmRuntime"]

STACK_LABEL = "com.docker.stack.namespace"
_POLL = 0.1  # as the docker runtime's gates: a gate returns within ~0.1 s of its state
_NETWORK_WAIT = 60.0


class SwarmRuntime:
    """A `WorkflowRuntime` on the Swarm whose manager the adapter reaches."""

    def __init__(
        self, docker: DockerAdapter, concurrency: int = 16, engine_id: str = "",
        registry: str = "", **_: Any,
    ) -> None:  # fmt: skip
        self._docker = docker
        self._api = docker.swarm
        self._engine_id = engine_id
        self._registry = registry.rstrip("/")
        self._images = Orchestrator(docker, concurrency, engine_id)
        self._local = DockerRuntime(docker, concurrency, engine_id)
        """For what runs on this node's Docker Engine: exec, shells, stats, top."""
        self._owners = Owners(engine_id)

    # -- labels and names -----------------------------------------------------------------

    def _owner(self, project: str) -> dict[str, str]:
        return {ENGINE_LABEL: self._engine_id, WORKFLOW_LABEL: project, STACK_LABEL: project}

    def _selector(self, project: str, everyone: bool) -> list[str]:
        mine = [f"{STACK_LABEL}={project}"]
        return mine if everyone else [*mine, f"{ENGINE_LABEL}={self._engine_id}"]

    # -- checks ---------------------------------------------------------------------------

    async def _manager(self) -> str:
        """The API version; Conflict when the Docker Engine is no swarm manager."""
        state = await self._api.state()
        if not state.manager:
            where = self._docker.host
            raise Conflict(
                f"runtime swarm: the Docker Engine at {where} is not a swarm manager (its "
                f"swarm state: {state.state}); run `docker swarm init` there, join it to a "
                "swarm as a manager, or point the engine's `docker_host` at a manager",
                docker=where,
            )
        return state.api_version

    async def check(self, project: ComposeProject, everyone: bool) -> None:
        from ._swarm_spec import refusals

        version = await self._manager()
        problems = [p for name in sorted(project.services) for p in refusals(project, name)]
        if not everyone:
            problems += binds(project) + volume_names(project)
        if problems:
            raise InvalidRequest(
                "runtime swarm cannot run this project: " + "; ".join(problems),
                path=problems[0].partition(":")[0],
            )
        jobs = [n for n in project.services if _is_job(project, n)]
        if jobs and older(version, "1.41"):
            raise InvalidRequest(
                f"services.{jobs[0]} is a one-shot, which Swarm runs as a job: Docker API "
                f"1.41 or newer is needed, this manager speaks {version}",
                path=f"services.{jobs[0]}",
            )

    # -- up -------------------------------------------------------------------------------

    async def up(
        self, plan: Plan, only: set[str] | None, wait: bool, remove_orphans: bool,
        within: float | None = None,
    ) -> None:  # fmt: skip
        project = plan.project
        await self.check(project, plan.everyone)
        created: list[str] = []
        try:
            with anyio.fail_after(within):
                await self._up(plan, only, wait, remove_orphans, created)
        except TimeoutError:
            await self._undo(plan, created)
            raise WorkflowFailed(
                f"{project.name}: not up within {within} s; see status() and logs()",
                workflow=project.name,
            ) from None
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                await self._undo(plan, created)
            raise
        plan.event("done", detail="up")

    async def _up(
        self, plan: Plan, only: set[str] | None, wait: bool, remove_orphans: bool,
        created: list[str],
    ) -> None:  # fmt: skip
        project = plan.project
        existing = {service_name(s): s for s in await self._api.services(
            self._selector(project.name, plan.everyone))}  # fmt: skip
        await self._foreign(project.name, plan.everyone)
        networks = await self._networks(plan)
        files = await self._files(plan)
        gates = _gates(project)
        for wave in plan.waves:
            chosen = [s for s in wave if only is None or s in only]
            async with task_group() as group:
                for name in chosen:
                    group.start_soon(
                        self._converge, plan, name, existing.get(name), networks, files, created
                    )
            for name in chosen:
                if name in gates or wait:
                    await self._gate(plan, name, gates.get(name, "service_started"))
        if remove_orphans and only is None:
            for name, orphan in existing.items():
                if name not in project.services:
                    plan.event("removing", name)
                    await self._api.remove_service(orphan.id)
                    plan.event("removed", name)

    async def _foreign(self, project: str, everyone: bool) -> None:
        if everyone:
            return
        found = await self._api.services([f"{STACK_LABEL}={project}"])
        foreign = [s for s in found if s.labels.get(ENGINE_LABEL) != self._engine_id]
        if foreign:
            raise Conflict(
                f"the stack {project!r} on this swarm has services made by another tool or "
                f"engine ({', '.join(sorted(s.name for s in foreign)[:5])}); this engine never "
                "touches them. Use another workflow name, or remove them with the tool that "
                "made them (`docker stack rm`); a MASTER key may take the stack over",
                workflow=project,
            )

    async def _networks(self, plan: Plan) -> dict[str, str]:
        """compose key -> Swarm network name, created (overlay, attachable) as needed."""
        project, names = plan.project, {}
        for key, spec in project.networks.items():
            names[key] = spec.name
            found = await self._docker.network(spec.name)
            if found is not None:  # ours, or refused unless MASTER (as on one machine)
                self._owners.check_resource(
                    plan.everyone, project.name, "network", key, spec, found.labels
                )
                continue
            if spec.external:
                continue
            plan.event("network", detail=f"creating {spec.name}")
            labels = {**spec.labels, **self._owner(project.name)}
            await self._docker.create_network(
                spec.name, labels, driver=spec.driver or "overlay", options=spec.driver_opts,
                internal=spec.internal, attachable=True,
            )  # fmt: skip
        return names

    async def _files(self, plan: Plan) -> dict[str, dict[str, tuple[str, str]]]:
        """Per kind ("secrets", "configs"): compose key -> (id, name) of a Swarm object
        named by its content's hash (Swarm's are immutable: a change makes a new one)."""
        if plan.prepare is not None:
            await anyio.to_thread.run_sync(plan.prepare)
        project = plan.project
        out: dict[str, dict[str, tuple[str, str]]] = {"secrets": {}, "configs": {}}
        have = {
            "secrets": dict(
                (n, i) for i, n in await self._api.secrets(self._selector(project.name, True))
            ),
            "configs": dict(
                (n, i) for i, n in await self._api.configs(self._selector(project.name, True))
            ),
        }
        for service in project.services.values():
            sources = plan.files.get(service.name, [])
            used = [("secrets", f.source) for f in service.secrets]
            used += [("configs", f.source) for f in service.configs]
            for (kind, key), (path, _) in zip(used, sources, strict=False):
                if key in out[kind]:
                    continue
                data = await anyio.to_thread.run_sync(_read, path)
                name = f"{project.name}_{key}-{hashlib.sha256(data).hexdigest()[:10]}"
                found = have[kind].get(name)
                if found is None:
                    create = (
                        self._api.create_secret if kind == "secrets" else self._api.create_config
                    )
                    found = await create(name, data, self._owner(project.name))
                out[kind][key] = (found, name)
        return out

    async def _converge(
        self, plan: Plan, name: str, current: SwarmService | None, networks: Mapping[str, str],
        files: Mapping[str, Mapping[str, tuple[str, str]]], created: list[str],
    ) -> None:  # fmt: skip
        from ._swarm_spec import service_spec

        project, service = plan.project, plan.project.services[name]
        image = self._reference(project, service)

        def spec_of(replicas: int | None = None, config_hash: str = "") -> dict[str, Any]:
            return service_spec(
                project, name, namespace=project.name,
                labels={**self._owner(project.name), SERVICE_LABEL: name}, image=image,
                networks=networks, secrets=files["secrets"], configs=files["configs"],
                replicas=replicas, config_hash=config_hash,
            )  # fmt: skip

        # The hash of the spec itself: any change of what Swarm runs (placement, update
        # policy, a secret's content) updates the service; nothing else touches it.
        want = hashlib.sha256(json.dumps(spec_of(), sort_keys=True).encode()).hexdigest()
        rebuild = bool(plan.build and service.build)
        if current is not None and current.labels.get(HASH) == want and not rebuild:
            return  # unchanged: its tasks (and a scale since) are kept
        if service.build is not None:
            await self._build_and_push(plan, service, image)
        spec = spec_of(config_hash=want)
        if current is None:
            plan.event("creating", name)
            created.append(await self._create(name, spec))
            plan.event("created", name)
        else:
            if rebuild:  # the same reference, a new image: make Swarm replace the tasks
                template = spec["TaskTemplate"]
                old = (current.spec.get("TaskTemplate") or {}).get("ForceUpdate") or 0
                template["ForceUpdate"] = int(old) + 1
            plan.event("updated", name, detail="the spec changed: Swarm rolls its tasks")
            await self._api.update_service(current.id, current.version, spec)

    async def _create(self, name: str, spec: Mapping[str, Any]) -> str:
        try:
            return await self._api.create_service(spec)
        except ApiError as exc:
            raise WorkflowFailed(
                f"services.{name}: Swarm refused the service: {exc.message}", service=name
            ) from None

    def _reference(self, project: ComposeProject, service: Service) -> str:
        """The image every node runs: a built one under the registry's name."""
        if service.build is None:
            return service.image or ""
        image = image_of(project, service)
        return f"{self._registry}/{image}" if self._registry else image

    async def _build_and_push(self, plan: Plan, service: Service, reference: str) -> None:
        """Build the service's image here (when asked, or missing) and push it."""
        if not self._registry:  # before building: an image no node could pull is no use
            raise WorkflowFailed(
                f"services.{service.name}.build: runtime swarm runs a built image on every "
                "node, so it must be pushed to a registry they pull from: set `registry` in "
                "the engine config (docs: From one machine to a cluster, the registry)",
                service=service.name,
            )
        image = await self._images.ensure_image(plan, service)
        await self._api.tag(image, reference)
        plan.event("pull", service.name, detail=f"pushing {reference}")
        errors = await self._api.push(reference)
        if errors:
            raise WorkflowFailed(
                f"services.{service.name}.build: pushing {reference} failed: {errors[-1]}",
                service=service.name,
            )

    async def _gate(self, plan: Plan, name: str, condition: str) -> None:
        """Wait until `name` meets `condition`; a failure names the key, nodes and fix."""
        project = plan.project
        while True:
            seen = await snapshot(self._api, self._selector(project.name, plan.everyone))
            status = workflow_status(project.name, [name], seen)
            service = next(s for s in status.services if s.name == name)
            raise_stuck(project, name, seen, self._registry)
            if service.state == "exited":  # a job, done
                plan.event("exited", name, exit_code=0)
                return
            if _is_job(project, name):
                raise_failed_job(name, seen)
            elif service.state in ("running", "stopped"):
                plan.event("healthy" if condition == "service_healthy" else "started", name)
                return
            await anyio.sleep(_POLL)

    async def _undo(self, plan: Plan, created: list[str]) -> None:
        if plan.keep_on_failure:
            return
        with anyio.CancelScope(shield=True):
            for service in created:
                with contextlib.suppress(ApiError):
                    await self._api.remove_service(service)

    # -- down, scale, act -----------------------------------------------------------------

    async def down(
        self, project: ComposeProject, volumes: bool, emit: Emit, everyone: bool
    ) -> None:
        plan = Plan(project, {}, [], emit, everyone=everyone)
        selector = self._selector(project.name, everyone)
        services = await self._api.services(selector)
        async with task_group() as group:
            for service in services:
                group.start_soon(self._remove, plan, service)
        for kind in ("secrets", "configs"):
            listed = self._api.secrets if kind == "secrets" else self._api.configs
            remove = self._api.remove_secret if kind == "secrets" else self._api.remove_config
            for ident, _ in await listed(selector):
                try:
                    await remove(ident)
                except ApiError as exc:
                    plan.event("error", detail=f"{kind} {ident}: {exc.message}")
        await self._remove_networks(plan, project)
        plan.event("done", detail="down")

    async def _remove(self, plan: Plan, service: SwarmService) -> None:
        name = service_name(service)
        plan.event("removing", name)
        with contextlib.suppress(NotFound):
            await self._api.remove_service(service.id)
        plan.event("removed", name)

    async def _remove_networks(self, plan: Plan, project: ComposeProject) -> None:
        """What `docker stack rm` does not: wait until each network is gone. A swarm
        network's removal is accepted at once and done by the managers once the last task
        on it let go, so `down` then `up` again would otherwise find it half gone."""
        for key, spec in project.networks.items():
            if spec.external:
                continue
            found = await self._docker.network(spec.name)
            if found is None or not (plan.everyone or _owned(found.labels, self._engine_id)):
                continue
            with anyio.move_on_after(_NETWORK_WAIT):
                while await self._docker.network(spec.name) is not None:
                    with contextlib.suppress(ApiError):  # in use by ending tasks: again
                        await self._docker.remove_network(spec.name)
                    await anyio.sleep(0.05)
                plan.event("network", detail=f"removed {spec.name}")
                continue
            plan.event("error", detail=f"networks.{key}: {spec.name} still in use")

    async def scale(self, plan: Plan, service: str, replicas: int) -> None:
        """Only the replica count of the service's current spec changes: no task restarts."""
        project = plan.project
        found = {service_name(s): s for s in await self._api.services(
            self._selector(project.name, plan.everyone))}  # fmt: skip
        current = found.get(service)
        if current is None:
            raise Conflict(
                f"service {service!r} of {project.name!r} is not up; bring it up first "
                "(`up()`, CLI: `dxflow up`), then scale it",
                service=service,
            )
        spec = dict(current.spec)
        mode = spec.get("Mode") or {}
        if "Replicated" not in mode:
            raise InvalidRequest(
                f"services.{service}.deploy.mode: a {next(iter(mode), 'global')} service has "
                "no replica count to scale; use mode replicated",
                service=service,
            )
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        await self._api.update_service(current.id, current.version, spec)
        plan.event("scaled", service, detail=f"{replicas} replicas")
        if replicas:
            await self._gate(plan, service, "service_started")

    async def act(
        self, project: ComposeProject, action: Action, services: list[str] | None,
        everyone: bool, grace: float | None = None, signal: str = "SIGKILL",
    ) -> None:  # fmt: skip
        raise InvalidRequest(
            f"runtime swarm has no `{action}`: Swarm keeps a service's tasks running. Use "
            "scale(service, 0) to stop a service and scale(service, n) to run it again, or "
            "down() and up()",
        )

    # -- observation ----------------------------------------------------------------------

    async def status(self, project: str, services: list[str], everyone: bool) -> WorkflowStatus:
        seen = await snapshot(self._api, self._selector(project, everyone))
        return workflow_status(project, services, seen)

    async def projects(self, stored: set[str], everyone: bool) -> list[ComposeProjectSummary]:
        labels = [STACK_LABEL] if everyone else [STACK_LABEL, f"{ENGINE_LABEL}={self._engine_id}"]
        stacks: dict[str, list[str]] = {}
        for service in await self._api.services(labels):
            stack = service.labels.get(STACK_LABEL, "")
            stacks.setdefault(stack, []).append(service_name(service))
        return [
            ComposeProjectSummary(
                name=name, managed=name in stored, state="swarm", services=sorted(services)
            )
            for name, services in sorted(stacks.items())
        ]

    async def logs(
        self, project: str, service: str | None, everyone: bool, follow: bool = False,
        tail: int | None = None, since: datetime | None = None,
    ) -> AsyncIterator[LogLine]:  # fmt: skip
        found = await self._api.services(self._selector(project, everyone))
        names = {s.id: service_name(s) for s in found if service in (None, service_name(s))}
        async for line in swarm_logs(self._api, names, follow, tail, since):
            yield line

    async def events(
        self, project: str, since: datetime, everyone: bool, own: AsyncIterable[WorkflowEvent]
    ) -> AsyncIterator[WorkflowEvent]:
        async for event in swarm_events(self._api, project, self._selector(project, everyone), own):
            yield event

    async def stats(self, containers: Sequence[tuple[str, ContainerState]]) -> list[ContainerStats]:
        return await self._local.stats(await self._here(containers))

    async def top(self, containers: Sequence[tuple[str, ContainerState]]) -> list[ContainerTop]:
        return await self._local.top(await self._here(containers))

    async def _here(
        self, containers: Sequence[tuple[str, ContainerState]]
    ) -> list[tuple[str, ContainerState]]:
        """The containers on this node (another node's are sampled by its own engine)."""
        mine = {c.id for c in await self._docker.containers([STACK_LABEL])}
        return [(s, c) for s, c in containers if c.id in mine]

    async def exec(
        self, container: str, cmd: Sequence[str], user: str | None, workdir: str | None,
        env: Mapping[str, str],
    ) -> ExecResult:  # fmt: skip
        await self._on_this_node(container)
        return await self._local.exec(container, cmd, user, workdir, env)

    def shell_command(
        self, container: str, command: Sequence[str], env: Mapping[str, str],
        env_file: str | None, workdir: str | None,
    ) -> ExecCommand:  # fmt: skip
        return self._local.shell_command(container, command, env, env_file, workdir)

    async def _on_this_node(self, container: str) -> None:
        here = await self._docker.containers([STACK_LABEL])
        if any(c.id == container for c in here):
            return
        tasks = await self._api.tasks({"desired-state": "running"})
        task = next((t for t in tasks if t.container == container), None)
        node = await self._node_name(task)
        raise Conflict(
            f"that task runs on node {node}, not on this engine's node: exec and shells reach "
            f"a task through its node's engine; bridge that node's dxflow engine to this one "
            f"and use engine.bridges.get({node!r}).engine, or exec on a replica on this node",
            node=node,
        )

    async def _node_name(self, task: SwarmTask | None) -> str:
        if task is None or task.node_id is None:
            return "(unknown)"
        nodes = {n.id: n.hostname for n in await self._api.nodes()}
        return nodes.get(task.node_id, task.node_id[:12])


# -- helpers ------------------------------------------------------------------------------


def _is_job(project: ComposeProject, name: str) -> bool:
    from ._swarm_spec import is_job

    return bool(is_job(project, name))


def _gates(project: ComposeProject) -> dict[str, str]:
    """service -> the strongest condition any dependent waits for."""
    rank = ("service_started", "service_healthy", "service_completed_successfully")
    gates: dict[str, str] = {}
    for service in project.services.values():
        for name, dependency in service.depends_on.items():
            old = gates.get(name, "service_started")
            gates[name] = max(old, dependency.condition, key=rank.index)
    return gates


def _owned(labels: Mapping[str, str], engine_id: str) -> bool:
    return labels.get(ENGINE_LABEL) == engine_id


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        return file.read(1 << 20)  # Swarm's limit for a secret or config is 500 KiB
