"""Writing OCI image archives without Docker: gzip layers from directory
trees, a config, a manifest and an index, in the OCI image layout that
``ctr images import`` reads.

Archives are reproducible: entries are sorted, owned by root (or by the uid a
path is given) and carry a fixed modification time, so the same tree always
gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

MTIME = 1_700_000_000
"""Modification time of every entry (a fixed value keeps digests stable)."""


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes to ``sink``."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def write_layer(root: Path, out: Path, owners: Mapping[str, int] | None = None) -> tuple[str, str, int]:
    """Write ``root`` as a gzip-compressed layer tar to ``out``; returns
    (diff id, compressed digest, compressed size). ``owners`` maps paths inside
    the tree (e.g. ``home/agent``) to the uid/gid they and their contents get;
    everything else belongs to root."""
    owners = dict(owners or {})
    with open(out, "wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in _walk(root):
                    rel = path.relative_to(root).as_posix()
                    info = tar.gettarinfo(str(path), arcname=rel)
                    uid = next((u for p, u in owners.items() if rel == p or rel.startswith(p + "/")), 0)
                    info.uid = info.gid = uid
                    info.uname = info.gname = ""
                    info.mtime = MTIME
                    if info.isreg():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    return "sha256:" + plain.sha.hexdigest(), "sha256:" + compressed.sha.hexdigest(), compressed.size


def _walk(root: Path):
    """Every path below ``root`` in a stable order, directories before their contents."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        if base != root:
            yield base
        # Symbolic links to directories show up in dirnames; os.walk does not follow them.
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            yield base / name


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def write_archive(out: Path, layer: Path, diff_id: str, digest: str, size: int, config: Mapping,
                  ref: str) -> None:
    """Write an OCI image archive of one layer; ``ref`` is the full image name
    (``docker.io/library/name:tag``) that the import gives it."""
    write_layered_archive(out, [(layer, diff_id, digest, size)], config, ref)


def write_layered_archive(out: Path, layers: list[tuple[Path, str, str, int]], config: Mapping, ref: str) -> None:
    """Write an OCI image archive of ``layers`` (path, diff id, digest, size; as
    :func:`write_layer` returns them, bottom first)."""
    config_doc = {
        "architecture": "amd64", "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id, _, _ in layers]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "agentproxy testenv/image.py"}
                    for _ in layers],
    }
    config_digest, config_bytes = _blob(json.dumps(config_doc, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}
                   for _, _, digest, size in layers],
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": len(manifest_bytes), "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": ref.rpartition(":")[2]},
        }],
    }
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        add(f"blobs/sha256/{config_digest[7:]}", config_bytes)
        add(f"blobs/sha256/{manifest_digest[7:]}", manifest_bytes)
        for layer, _, digest, _ in layers:
            info = tarfile.TarInfo(f"blobs/sha256/{digest[7:]}")
            info.size, info.mtime, info.mode = layer.stat().st_size, MTIME, 0o644
            with open(layer, "rb") as f:
                tar.addfile(info, f)
    tmp.replace(out)
