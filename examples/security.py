"""What a key that is not MASTER reaches: exactly its permissions, nothing of the host.

    python examples/security.py      # an in-process engine on DXFLOW_HOME

The engine (MASTER) registers `alice` with WORKFLOW, SHELL and OBJECT. Alice's workflows
pass the `baseline` policy, her shells run as the engine's run-as user (`dxflow`, made by
scripts/setup.sh where the engine runs as root) and her paths stay in the storage root.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dxflow

ALICE = "alice-example"
ESCAPES = {
    "the host's root": {"volumes": ["/:/host:ro"]},
    "the Docker socket": {"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
    "a privileged container": {"privileged": True},
    "CAP_SYS_ADMIN": {"cap_add": ["SYS_ADMIN"]},
    "the host's network": {"network_mode": "host"},
}


def _compose(**service: object) -> dict[str, object]:
    return {"services": {"app": {"image": "busybox", **service}}}


def _register(engine: dxflow.Engine, folder: Path) -> Path:
    pair = engine.keys.generate(folder / "alice.pem", "ed25519")
    if any(k.identity == ALICE for k in engine.keys.list()):  # a previous run's key
        engine.keys.unregister(ALICE)
    engine.keys.register(pair.public, ALICE, ["WORKFLOW", "SHELL", "OBJECT"])
    return pair.private


def _workflows(alice: dxflow.Engine, storage: Path) -> None:
    for what, service in ESCAPES.items():
        try:
            alice.workflows.create("escape", _compose(**service))
        except dxflow.PermissionDenied as refused:
            why = refused.message.split("refused: ", 1)[-1].split(" Fix:")[0]
            print(f"workflow with {what}: refused ({why})")
    alice.objects.put(b"hello from storage\n", "apps/demo/hello.txt", overwrite=True)
    app = _compose(volumes=["./hello.txt:/hello.txt:ro"])
    wf = alice.workflows.create("demo-alice", app, working_dir=str(storage / "apps/demo"))
    print(f"workflow binding a file of the storage root: accepted ({wf.name})")
    wf.remove()


def _shell(alice: dxflow.Engine, home: str) -> None:
    try:
        sh = alice.shells.create("alice-example", command="/bin/sh")
    except dxflow.EngineUnavailable as refused:  # no run-as user on this machine
        print(f"shell: {refused.message}")
        return
    print(f"shell runs as: {sh.run('id -un').output.strip()}")
    stolen = sh.run(f"cat {home}/keys/master.pem")
    print(f"cat master.pem: exit {stolen.exit_code}, {stolen.output.strip().split(': ')[-1]}")
    sh.remove()


def main() -> None:
    with dxflow.Engine.from_env() as engine, tempfile.TemporaryDirectory() as folder:
        home = engine.info().home
        private = _register(engine, Path(folder))
        with dxflow.Engine(key=private, home=home) as alice:
            print(f"alice is {alice.whoami().identity}: {alice.whoami().permissions}")
            _workflows(alice, Path(home) / "storage")
            _shell(alice, home)
            try:
                alice.keys.list()
            except dxflow.PermissionDenied as refused:
                print(f"key management: refused ({refused.message})")
        denied = engine.audit(identity=ALICE, operation="workflows.create", limit=20)
        print(f"audit: {sum(r.outcome.startswith('error') for r in denied)} refusals recorded")
        engine.keys.unregister(ALICE)


if __name__ == "__main__":
    main()
