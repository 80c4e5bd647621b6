"""Providers of xm_rules: a layer, and an image other rules can extend, run or push."""

LayerInfo = provider(
    doc = "One image layer, written with its descriptor by a single action.",
    fields = {
        "name": "str: a short name, used in history entries and golden listings.",
        "blob": "File: the layer, a gzip-compressed tar (`.tar.gz`).",
        "descriptor": "File: JSON with the layer's `mediaType`, `digest` and `size` (of the blob) " +
                      "and `diffId` (the sha256 of the uncompressed tar).",
    },
)

OciImageInfo = provider(
    doc = "An OCI image built by xm_oci_image or xm_py_image.",
    fields = {
        "layers": "list of LayerInfo: every layer of the image, the base image's first.",
        "config": "File: the image config blob (JSON).",
        "manifest": "File: the OCI image manifest blob (JSON).",
        "index": "File: the OCI image index (`index.json` of the layout).",
        "docker_manifest": "File: Docker's `manifest.json` (inside the tarball).",
        "digest": "File: the manifest's digest, `sha256:<64 hex digits>`, without a newline.",
        "layout": "File (a directory): the OCI image layout.",
        "tarball": "File: one tar holding the OCI layout and Docker's `manifest.json`; " +
                   "`docker load`, `podman load` and `skopeo copy oci-archive:` accept it.",
        "repo_tags": "list of str: the `name:tag` references the tarball loads as.",
        "os": "str: the image's operating system, e.g. `linux`.",
        "architecture": "str: the image's CPU architecture, e.g. `amd64`.",
    },
)
