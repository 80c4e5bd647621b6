"""Public API of xm_rules: reproducible OCI images of Python binaries, built by Bazel alone.

Rules and macros (docs/rules.md has each attribute and an example):

- `xm_layer`: a deterministic layer from files, symlinks, directories and empty files.
- `xm_oci_image`: an OCI image from a base image and layers, with entrypoint, cmd, env, workdir,
  user, labels, annotations, os and architecture.
- `xm_py_image`: a py_binary's runfiles as ordered layers (base and interpreter, heavy
  third-party packages each in its own layer, other third-party packages, first-party code, the
  launcher) on a Python base image.
- `xm_deb_layer`, `xm_deb_ca_bundle`: a layer of Debian packages' data archives, and the CA
  bundle the ca-certificates postinst would write. The packages come from a lock, downloaded by
  the `debian` module extension of //xm_rules:extensions.bzl.
- `xm_deb_lock`: `bazel run` it to regenerate a lock of Debian packages from root names.
- `xm_image_test`, `xm_layer_golden_test`: validate an image; compare its layers with golden
  listings.
- `xm_oci_push`: `bazel run` it to push an image to a registry (`-- --tag=... --repository=...`).
- `xm_launch`: a launch script as a runnable target (`bazel run //exp:launch -- --flags`); the
  binaries and images it packages by label are built with it and listed in a manifest, so the
  `xmanager` client packages them without running Bazel again.

Providers, for rules that consume images (e.g. to run or push them):

- `LayerInfo`: `name`, `blob` (the .tar.gz), `descriptor` (JSON: mediaType, digest, size, diffId).
- `OciImageInfo`: `layers` (LayerInfo list, base first), `config`, `manifest`, `index`,
  `docker_manifest`, `digest` (File: `sha256:<hex>`, no newline), `layout` (the OCI layout
  directory), `tarball` (File: OCI layout plus Docker's manifest.json, for `docker load`),
  `repo_tags`, `os`, `architecture`.

Every image target also has the output groups `tarball`, `digest`, `layout` and `metadata`, e.g.
`filegroup(name = "t", srcs = [":image"], output_group = "tarball")`.
"""

load("//xm_rules/private:debian.bzl", _xm_deb_ca_bundle = "xm_deb_ca_bundle", _xm_deb_layer = "xm_deb_layer", _xm_deb_lock = "xm_deb_lock")
load("//xm_rules/private:launch.bzl", _xm_launch = "xm_launch")
load("//xm_rules/private:layer.bzl", _xm_layer = "xm_layer")
load("//xm_rules/private:oci_image.bzl", _xm_oci_image = "xm_oci_image")
load("//xm_rules/private:providers.bzl", _LayerInfo = "LayerInfo", _OciImageInfo = "OciImageInfo")
load("//xm_rules/private:push.bzl", _xm_oci_push = "xm_oci_push")
load("//xm_rules/private:py_image.bzl", _xm_py_image = "xm_py_image")
load("//xm_rules/private:tests.bzl", _xm_image_test = "xm_image_test", _xm_layer_golden_test = "xm_layer_golden_test")

LayerInfo = _LayerInfo
OciImageInfo = _OciImageInfo
xm_layer = _xm_layer
xm_oci_image = _xm_oci_image
xm_py_image = _xm_py_image
xm_deb_layer = _xm_deb_layer
xm_deb_ca_bundle = _xm_deb_ca_bundle
xm_deb_lock = _xm_deb_lock
xm_image_test = _xm_image_test
xm_layer_golden_test = _xm_layer_golden_test
xm_launch = _xm_launch
xm_oci_push = _xm_oci_push
