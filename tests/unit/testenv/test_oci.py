"""OCI archives written without Docker: reproducible, owned as asked, and laid
out the way `ctr images import` reads them (index -> manifest -> config, layer)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from testenv import oci


def _tree(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    (root / "home/agent/work").mkdir(parents=True)
    return root


def test_layers_are_reproducible_and_owned_as_asked(tmp_path):
    tree = _tree(tmp_path / "rootfs")
    first = oci.write_layer(tree, tmp_path / "a.tar.gz", owners={"home/agent": 1000})
    second = oci.write_layer(tree, tmp_path / "b.tar.gz", owners={"home/agent": 1000})
    assert first == second
    diff_id, digest, size = first
    data = (tmp_path / "a.tar.gz").read_bytes()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    plain = gzip.decompress(data)
    assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["home", "home/agent", "home/agent/work", "usr", "usr/bin", "usr/bin/alias", "usr/bin/tool"]
    assert members["home/agent/work"].uid == 1000 and members["home"].uid == 0 and members["usr/bin/tool"].uid == 0
    assert members["usr/bin/alias"].issym() and members["usr/bin/alias"].linkname == "tool"
    assert members["usr/bin/tool"].mode & 0o755 == 0o755
    assert {m.mtime for m in members.values()} == {oci.MTIME}


def test_the_archive_links_index_manifest_config_and_layer_by_digest(tmp_path):
    tree = _tree(tmp_path / "rootfs")
    layer = tmp_path / "layer.tar.gz"
    diff_id, digest, size = oci.write_layer(tree, layer)
    out = tmp_path / "image.oci.tar"
    oci.write_archive(out, layer, diff_id, digest, size, {"User": "1000:1000", "Entrypoint": ["tool"]},
                      "docker.io/library/thing:latest")
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}

    def blob(ref: str) -> bytes:
        return files[f"blobs/sha256/{ref.split(':')[1]}"]

    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    entry = json.loads(files["index.json"])["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/thing:latest"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    manifest = json.loads(blob(entry["digest"]))
    assert hashlib.sha256(blob(entry["digest"])).hexdigest() == entry["digest"].split(":")[1]
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [diff_id] and config["config"]["User"] == "1000:1000"
    assert manifest["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                                   "size": size}]
    assert blob(digest) == layer.read_bytes()


def test_a_layered_archive_lists_its_layers_bottom_first(tmp_path):
    below, above = tmp_path / "below", tmp_path / "above"
    (below / "usr/local/bin").mkdir(parents=True)
    (below / "usr/local/bin/big").write_bytes(b"\0" * 4096)
    _tree(above)
    layers = []
    for name, tree in (("below", below), ("above", above)):
        path = tmp_path / f"{name}.tar.gz"
        layers.append((path, *oci.write_layer(tree, path)))
    out = tmp_path / "image.oci.tar"
    oci.write_layered_archive(out, layers, {"User": "1000:1000"}, "docker.io/library/thing:latest")
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    blob = lambda d: files[f"blobs/sha256/{d.split(':')[1]}"]  # noqa: E731
    manifest = json.loads(blob(json.loads(files["index.json"])["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer[1] for layer in layers]
    assert [entry["digest"] for entry in manifest["layers"]] == [layer[2] for layer in layers]
    assert len(config["history"]) == 2
    for path, _, digest, size in layers:
        assert blob(digest) == path.read_bytes() and len(blob(digest)) == size
