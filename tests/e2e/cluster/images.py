"""Container images made without a Docker engine: a static binary (plus a few files) in a
Docker-archive tar, the format `ctr images import` and `docker load` read.

The local cluster needs three kinds of image besides langscale's own: the pod sandbox
(`pause`), the cluster DNS (CoreDNS) and KEDA. Each is one static Go binary, so an image is
one layer with that binary: no base image, nothing pulled.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ImageFile:
    """One file of an image: its path inside the image, where it comes from, its mode."""

    path: str
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o755


@dataclass
class Image:
    name: str  # repository:tag
    files: list[ImageFile]
    entrypoint: list[str]
    user: str = "65532:65532"
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/bin:/usr/bin:/bin"])


def _layer(files: list[ImageFile]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for item in files:
            parts = item.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data = item.data if item.data is not None else item.source.read_bytes()  # type: ignore[union-attr]
            info = tarfile.TarInfo("/".join(parts))
            info.size = len(data)
            info.mode = item.mode
            tar.addfile(info, io.BytesIO(data))
        # A writable /tmp, as most programs expect one.
        info = tarfile.TarInfo("tmp")
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777
        tar.addfile(info)
    return buffer.getvalue()


def write_archive(image: Image, destination: Path) -> Path:
    """Write `image` as a Docker-archive tar at `destination` (atomically)."""
    layer = _layer(image.files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": image.entrypoint, "User": image.user, "Env": image.env},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [image.name], "Layers": ["layer.tar"]}]
    tmp = destination.with_suffix(".partial")
    with tarfile.open(tmp, mode="w") as tar:
        for name, data in (
            ("layer.tar", layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(destination)
    return destination
