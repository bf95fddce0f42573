"""Files on an engine: upload a folder, read parts of files, archive, share, and pandas.

    python examples/objects.py                     # in-process engine on DXFLOW_HOME
    DXFLOW_URL=http://127.0.0.1:7419 DXFLOW_KEY=~/.dxflow/keys/master.pem \\
        python examples/objects.py                 # a booted (or remote) engine
"""

from __future__ import annotations

import csv
import hashlib
import io
import tempfile
from pathlib import Path

import fsspec
import pandas as pd

import dxflow


def make_dataset(folder: Path) -> None:
    (folder / "raw").mkdir(parents=True)
    for day in range(3):
        with (folder / "raw" / f"day{day}.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["sensor", "value"])
            writer.writerows([f"s{i}", i * (day + 1)] for i in range(100))
    (folder / "README.txt").write_text("three days of sensor readings\n")


def main() -> None:
    with dxflow.Engine.from_env() as engine, tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "dataset"
        make_dataset(local)
        objects = engine.objects

        objects.put(local, "demo/dataset", overwrite=True)  # a folder, recursively
        for item in objects.ls("demo/dataset", depth=2):
            print(f"{item.type:9} {item.size:6} {item.path}")

        head = objects.cat("demo/dataset/raw/day0.csv", 0, 16)  # a byte range
        print("first bytes:", head)
        digest = objects.checksum("demo/dataset/raw/day1.csv")
        local_digest = hashlib.sha256((local / "raw" / "day1.csv").read_bytes()).hexdigest()
        print("sha256 matches:", digest == local_digest)

        done = objects.zip("demo/dataset", "demo/dataset.zip", overwrite=True)
        print(f"zipped {done.entries} entries ({done.bytes} bytes) into {done.dest}")
        objects.unzip("demo/dataset.zip", "demo/restored", overwrite=True)
        print("restored:", [i.name for i in objects.ls("demo/restored/raw")])

        link = objects.share("demo/dataset.zip", expires="15m", max_uses=3)
        print("share link (15 minutes, 3 uses):", link.url)
        objects.revoke(link.id)

        # Any fsspec-aware tool reads and writes engine storage: here pandas.
        fs = objects.fs()
        frames = [pd.read_csv(fs.open(f"demo/dataset/raw/day{d}.csv")) for d in range(3)]
        total = pd.concat(frames).groupby("sensor", sort=False)["value"].sum()
        with fs.open("demo/summary.csv", "wb") as out:
            out.write(total.to_csv().encode())
        summary = pd.read_csv(io.BytesIO(objects.cat("demo/summary.csv")))
        print("summary rows:", len(summary), "| s99 total:", int(summary["value"].iloc[-1]))
        print("fsspec knows dxflow://", "dxflow" in fsspec.available_protocols())

        objects.rm("demo", recursive=True)
        print("cleaned up")


if __name__ == "__main__":
    main()
