"""xm_py_image: a py_binary and its runfiles as ordered layers on a Python base image."""

load(":layer.bzl", "layer_tool_attrs", "write_layer")
load(":oci_image.bzl", "build_image", "image_config_attrs", "image_tool_attrs")
load(":providers.bzl", "OciImageInfo")

_PYTHON_TOOLCHAIN = "@bazel_tools//tools/python:toolchain_type"
_RESERVED = ["interpreter", "third_party", "first_party", "launcher"]
_MERGED = ["/bin/", "/sbin/", "/lib/", "/lib64/"]

def _runfiles_path(ctx, f):
    """Where a file sits in the runfiles tree: `_main/pkg/x.py`, `<repo>/x`."""
    if f.short_path.startswith("../"):
        return f.short_path[3:]
    return ctx.workspace_name + "/" + f.short_path

def _usr_merged(path):
    """`/bin/python3` and `/usr/bin/python3` are the same file in a merged-/usr image."""
    for prefix in _MERGED:
        if path.startswith(prefix):
            return "/usr" + path
    return path

def _heavy_layers(ctx):
    """The explicit mapping: external repository -> layer name."""
    heavy = {}
    for layer_name, target in ctx.attr.layers.items():
        repo = target.label.workspace_name
        if layer_name in _RESERVED or not layer_name.replace("_", "").replace("-", "").isalnum():
            fail("layers: {} is not a usable layer name ({}; not one of {})".format(
                repr(layer_name),
                "letters, digits, _ and -",
                ", ".join(_RESERVED),
            ))
        if not repo:
            fail(("layers[{}]: {} is in the main repository; only third-party packages " +
                  "(external repositories such as @pypi//numpy) get layers of their own").format(
                layer_name,
                target.label,
            ))
        if repo in heavy:
            fail("layers: {} and {} both map repository @@{}".format(heavy[repo], layer_name, repo))
        heavy[repo] = layer_name
    return heavy

def _group_of(f, interpreter_files, heavy, used_repos):
    """The layer of a runfile: by the repository that owns it (recorded in `used_repos`)."""
    repo = f.owner.workspace_name if f.owner else ""
    if f in interpreter_files:
        return "interpreter"
    if not repo:
        return "first_party"
    used_repos[repo] = True
    return heavy.get(repo, "third_party")

def _xm_py_image_impl(ctx):
    binary = ctx.attr.binary
    executable = binary[DefaultInfo].files_to_run.executable
    repo_mapping = binary[DefaultInfo].files_to_run.repo_mapping_manifest
    runfiles = binary[DefaultInfo].default_runfiles
    app = ctx.attr.app_dir.rstrip("/")
    if not app.startswith("/"):
        fail("app_dir: {} is not an absolute path".format(repr(ctx.attr.app_dir)))
    stub = "{}/{}".format(app, binary.label.name)
    root = stub + ".runfiles"
    runtime = ctx.toolchains[_PYTHON_TOOLCHAIN].py3_runtime
    interpreter_files = {f: True for f in (runtime.files.to_list() if runtime.files else [])}
    if runtime.interpreter:
        interpreter_files[runtime.interpreter] = True
    heavy = _heavy_layers(ctx)

    order = ["interpreter"] + heavy.values() + ["third_party", "first_party", "launcher"]
    groups = {name: [] for name in order}
    used_repos = {}

    # (path in the image, File) of every runfile; flattening is needed to split them.
    placed = [
        (root + "/" + _runfiles_path(ctx, f), f)
        for f in runfiles.files.to_list()
        if f != executable
    ]
    placed += [
        ("{}/{}/{}".format(root, ctx.workspace_name, entry.path), entry.target_file)
        for entry in runfiles.symlinks.to_list()
    ]
    placed += [
        (root + "/" + entry.path, entry.target_file)
        for entry in runfiles.root_symlinks.to_list()
    ]
    for path, f in placed:
        groups[_group_of(f, interpreter_files, heavy, used_repos)].append((path, f, None))
    for repo, layer_name in heavy.items():
        if repo not in used_repos:
            fail(("layers[{}]: repository @@{} is not among the runfiles of {}; map only " +
                  "dependencies of the binary").format(layer_name, repo, binary.label))

    # The launcher: Bazel's stub (at /app/<binary> and in the runfiles), the repository mapping,
    # the empty __init__.py files Bazel creates, and the interpreter path the stub execs.
    groups["launcher"] += [
        (stub, executable, "0755"),
        (root + "/" + _runfiles_path(ctx, executable), executable, "0755"),
    ]
    if repo_mapping:
        groups["launcher"].append((root + "/_repo_mapping", repo_mapping, "0644"))
    empty_files = []
    for name in runfiles.empty_filenames.to_list():
        path = name[3:] if name.startswith("../") else ctx.workspace_name + "/" + name
        empty_files.append(root + "/" + path)
    symlinks = {}
    recorded = runtime.interpreter_path
    if recorded and _usr_merged(recorded) != _usr_merged(ctx.attr.python):
        symlinks[_usr_merged(recorded)] = ctx.attr.python

    layers = []
    for name, files in groups.items():
        if name == "launcher":
            layers.append(write_layer(
                ctx,
                name,
                files = files,
                empty_files = empty_files,
                symlinks = symlinks,
            ))
        elif files:
            layers.append(write_layer(ctx, name, files = files))

    base = ctx.attr.base[OciImageInfo]
    return build_image(
        ctx,
        base,
        layers,
        entrypoint = ctx.attr.entrypoint or [ctx.attr.python, stub],
        workdir = ctx.attr.workdir or "{}/{}".format(root, ctx.workspace_name),
    )

xm_py_image = rule(
    implementation = _xm_py_image_impl,
    doc = """An OCI image of a py_binary: its runfiles split into ordered layers on a Python base.

Layers, bottom first: the base image's (Debian's python3 by default); `interpreter` (the
toolchain's interpreter files, only for an in-build Python runtime); one layer per entry of
`layers` (heavy third-party packages, chosen by label); `third_party` (every other external
repository); `first_party` (the main repository's files); `launcher` (Bazel's Python stub at
`<app_dir>/<binary>`, the repository mapping, the empty `__init__.py` files Bazel creates, and a
symlink from the interpreter path the stub records to `python` when they differ). Each layer's
action reads only that layer's files, so editing first-party code rebuilds only `first_party`.
Empty layers are left out.

The runfiles tree is `<app_dir>/<binary>.runfiles/`, the working directory its main-repository
directory (as under `bazel run`), and the entrypoint `[python, <app_dir>/<binary>]`: the stub runs
under the image's interpreter, so the image needs no `/usr/bin/env`. Arguments go in `cmd` or
after the image name in `docker run`.

Outputs and output groups as for xm_oci_image. Provides OciImageInfo.

Example:

```starlark
py_binary(
    name = "train",
    srcs = ["train.py"],
    deps = ["@pypi//numpy"],
)

xm_py_image(
    name = "train_image",
    binary = ":train",
    layers = {"numpy": "@pypi//numpy"},
)
```
""",
    attrs = dict({
        "binary": attr.label(
            mandatory = True,
            executable = True,
            cfg = "target",
            doc = "The py_binary to package.",
        ),
        "base": attr.label(
            default = Label("//xm_rules/debian:python_base"),
            providers = [OciImageInfo],
            doc = "The base image; it must provide `python`. Default: Debian bookworm's python3 " +
                  "with CA certificates and a non-root user (//xm_rules/debian:python_base).",
        ),
        "layers": attr.string_keyed_label_dict(
            doc = "Heavy third-party packages that get a layer each: layer name -> a target of " +
                  "the package's repository, e.g. `{\"numpy\": \"@pypi//numpy\"}`. All files of " +
                  "that repository go to that layer. Each must be a dependency of `binary`.",
        ),
        "app_dir": attr.string(
            default = "/app",
            doc = "Where the stub and its runfiles tree go in the image.",
        ),
        "python": attr.string(
            default = "/usr/bin/python3.11",
            doc = "The base image's Python interpreter, which runs the stub.",
        ),
    }, **dict(image_config_attrs(), **dict(layer_tool_attrs(), **image_tool_attrs()))),
    toolchains = [_PYTHON_TOOLCHAIN],
    provides = [OciImageInfo],
)
