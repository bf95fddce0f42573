"""Self-test of _file_peers.py (not part of the suite): the peers start, serve and stop.

Creates a 64 MiB file, downloads it from nginx with curl, and puts then gets 16 MiB
through Jupyter Server with fsspec's `jupyter` filesystem; prints MB/s (1 MB = 10^6 B),
medians over N runs (default 3, `--quick` 1).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import human_stream, median, parse_args, print_table
from _file_peers import curl_download, jupyter_roundtrip, jupyter_server, nginx

MIB = 1024 * 1024
DOWNLOAD_BYTES = 64 * MIB
ROUNDTRIP_BYTES = 16 * MIB


def mb_s(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:,.1f} MB/s"


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    runs = args.runs or (1 if args.quick else 3)
    root = Path(tempfile.mkdtemp(prefix="dxflow-bench-filepeers-"))
    rows: list[list[Any]] = []
    try:
        blob = root / "blob.bin"
        with open(blob, "wb") as f:
            for _ in range(DOWNLOAD_BYTES // MIB):
                f.write(os.urandom(MIB))
        with nginx(root) as base_url:
            print(f"nginx at {base_url}", file=out)
            curl_download(f"{base_url}/blob.bin")  # warm-up: page cache, connection setup
            times = [curl_download(f"{base_url}/blob.bin") for _ in range(runs)]
            try:
                curl_download(f"{base_url}/missing.bin")
            except RuntimeError as exc:
                print(f"  a 404 raises as it should: {exc}", file=out)
            else:
                raise AssertionError("curl_download did not raise on a 404")
        rows.append(["nginx + curl GET 64 MiB", f"{median(times) * 1e3:.1f} ms",
                     mb_s(DOWNLOAD_BYTES, median(times))])  # fmt: skip

        data = os.urandom(ROUNDTRIP_BYTES)
        with jupyter_server(root) as (base_url, token):
            print(f"jupyter_server at {base_url}", file=out)
            samples = [jupyter_roundtrip(base_url, token, "rt.bin", data) for _ in range(runs)]
            size = (root / "rt.bin").stat().st_size
            if size != ROUNDTRIP_BYTES:
                raise AssertionError(f"rt.bin on disk has {size} bytes")
            get_curl = curl_download(
                f"{base_url}/files/rt.bin", headers={"Authorization": f"token {token}"}
            )
        put = median([p for p, _ in samples])
        get = median([g for _, g in samples])
        rows.append(
            ["jupyter fsspec put 16 MiB", f"{put * 1e3:.1f} ms", mb_s(ROUNDTRIP_BYTES, put)]
        )
        rows.append(
            ["jupyter fsspec get 16 MiB", f"{get * 1e3:.1f} ms", mb_s(ROUNDTRIP_BYTES, get)]
        )
        rows.append(["jupyter /files + curl 16 MiB", f"{get_curl * 1e3:.1f} ms",
                     mb_s(ROUNDTRIP_BYTES, get_curl)])  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows, ["transfer", f"median of {runs}", "throughput"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
