"""xm_oci_image: an OCI image from a base image and layers."""

load(":actions.bzl", "run_tool")
load(":providers.bzl", "LayerInfo", "OciImageInfo")

def image_tool_attrs():
    tools = {
        "_image_config_tool": "//xm_rules/tools:image_config",
        "_oci_layout_tool": "//xm_rules/tools:oci_layout",
        "_oci_tarball_tool": "//xm_rules/tools:oci_tarball",
    }
    return {
        name: attr.label(default = Label(tool), executable = True, cfg = "exec")
        for name, tool in tools.items()
    }

def image_config_attrs():
    """The attributes xm_oci_image and xm_py_image share, with their documentation."""
    return {
        "entrypoint": attr.string_list(
            doc = "The command the container runs. Empty: the base image's. Setting it " +
                  "without `cmd` clears the base image's `cmd`, as in a Dockerfile.",
        ),
        "cmd": attr.string_list(
            doc = "Default arguments, appended to the entrypoint. Empty: inherited (see `entrypoint`).",
        ),
        "env": attr.string_dict(
            doc = "Environment variables, over the base image's; `${NAME}` expands to the base's value.",
        ),
        "workdir": attr.string(doc = "The working directory. Empty: the base image's."),
        "user": attr.string(doc = "The user (`name`, `uid` or `uid:gid`). Empty: the base image's."),
        "labels": attr.string_dict(doc = "Config labels, over the base image's."),
        "annotations": attr.string_dict(doc = "Annotations of the image manifest."),
        "os": attr.string(doc = "The operating system. Empty: the base image's, else `linux`."),
        "architecture": attr.string(doc = "The CPU architecture. Empty: the base image's, else `amd64`."),
        "repo_tags": attr.string_list(
            doc = "The `name:tag` references of the tarball's `manifest.json` (what `docker load` " +
                  "names the image). Default: `bazel/<package>/<name>:latest`.",
        ),
    }

def _default_tag(label):
    allowed = "abcdefghijklmnopqrstuvwxyz0123456789._-/"
    path = "bazel/" + (label.package + "/" if label.package else "") + label.name
    clean = "".join([c if c in allowed else "-" for c in path.lower().elems()])
    return clean + ":latest"

def build_image(ctx, base, layers, entrypoint = None, cmd = None, env = None, workdir = None):
    """Declares an image's actions and returns [OciImageInfo, DefaultInfo, OutputGroupInfo].

    Args:
      ctx: a rule context with image_tool_attrs() and image_config_attrs().
      base: the base image's OciImageInfo, or None.
      layers: list of LayerInfo, the image's own layers, in order.
      entrypoint, cmd, env, workdir: overrides of the attributes of the same names.
    Returns:
      A list of providers.
    """
    name = ctx.label.name
    all_layers = (base.layers if base else []) + layers
    outputs = {
        "config": ctx.actions.declare_file(name + ".config.json"),
        "manifest": ctx.actions.declare_file(name + ".manifest.json"),
        "index": ctx.actions.declare_file(name + ".index.json"),
        "docker-manifest": ctx.actions.declare_file(name + ".docker-manifest.json"),
        "digest": ctx.actions.declare_file(name + ".digest"),
    }
    os = ctx.attr.os or (base.os if base else "linux")
    architecture = ctx.attr.architecture or (base.architecture if base else "amd64")
    repo_tags = ctx.attr.repo_tags or [_default_tag(ctx.label)]

    # The spec that all three assembly actions read; each derives the same documents from it,
    # so the tarball and layout need not wait for the config action.
    spec = ctx.actions.declare_file(name + ".image.json")
    ctx.actions.write(spec, json.encode({
        "label": str(ctx.label),
        "base_config": base.config.path if base else None,
        "layers": [
            {"name": layer.name, "descriptor": layer.descriptor.path, "blob": layer.blob.path}
            for layer in all_layers
        ],
        "entrypoint": entrypoint if entrypoint != None else ctx.attr.entrypoint,
        "cmd": cmd if cmd != None else ctx.attr.cmd,
        "env": env if env != None else ctx.attr.env,
        "workdir": workdir if workdir != None else ctx.attr.workdir,
        "user": ctx.attr.user,
        "labels": ctx.attr.labels,
        "annotations": ctx.attr.annotations,
        "os": os,
        "architecture": architecture,
        "repo_tags": repo_tags,
    }))
    metadata_inputs = [spec] + [layer.descriptor for layer in all_layers]
    if base:
        metadata_inputs.append(base.config)
    blob_inputs = metadata_inputs + [layer.blob for layer in all_layers]

    args = ctx.actions.args()
    args.add("--spec", spec)
    for key, f in outputs.items():
        args.add("--out-" + key, f)
    run_tool(
        ctx,
        ctx.executable._image_config_tool,
        args,
        inputs = metadata_inputs,
        outputs = outputs.values(),
        mnemonic = "XmImageConfig",
        progress_message = "Writing the config and manifest of image %{label}",
    )

    layout = ctx.actions.declare_directory(name + ".oci")
    layout_args = ctx.actions.args()
    layout_args.add("--spec", spec)
    layout_args.add("--out", layout.path)
    run_tool(
        ctx,
        ctx.executable._oci_layout_tool,
        layout_args,
        inputs = blob_inputs,
        outputs = [layout],
        mnemonic = "XmOciLayout",
        progress_message = "Linking the OCI layout of image %{label}",
    )

    tarball = ctx.actions.declare_file(name + ".tar")
    tarball_args = ctx.actions.args()
    tarball_args.add("--spec", spec)
    tarball_args.add("--out", tarball)
    run_tool(
        ctx,
        ctx.executable._oci_tarball_tool,
        tarball_args,
        inputs = blob_inputs,
        outputs = [tarball],
        mnemonic = "XmOciTarball",
        progress_message = "Writing the image tarball of %{label}",
    )

    info = OciImageInfo(
        layers = all_layers,
        config = outputs["config"],
        manifest = outputs["manifest"],
        index = outputs["index"],
        docker_manifest = outputs["docker-manifest"],
        digest = outputs["digest"],
        layout = layout,
        tarball = tarball,
        repo_tags = repo_tags,
        os = os,
        architecture = architecture,
    )
    return [
        info,
        DefaultInfo(files = depset([tarball, outputs["digest"], layout])),
        OutputGroupInfo(
            tarball = depset([tarball]),
            digest = depset([outputs["digest"]]),
            layout = depset([layout]),
            metadata = depset([outputs[k] for k in ("config", "manifest", "index", "docker-manifest")]),
        ),
    ]

def _xm_oci_image_impl(ctx):
    base = ctx.attr.base[OciImageInfo] if ctx.attr.base else None
    return build_image(ctx, base, [layer[LayerInfo] for layer in ctx.attr.layers])

xm_oci_image = rule(
    implementation = _xm_oci_image_impl,
    doc = """An OCI image: a base image, more layers, and config settings.

Assembly reads only the layers' descriptors (never re-hashes blobs). Outputs, also as output
groups of the same names: `<name>.tar` (`tarball`: an OCI layout plus Docker's `manifest.json`, for
`docker load`, `podman load`, `skopeo copy oci-archive:`), `<name>.digest` (`digest`: the manifest
digest, `sha256:…`), `<name>.oci` (`layout`: an OCI image layout directory whose blobs are hard
links to the layer outputs) and, in the `metadata` group, the config, manifest, index and
`manifest.json`. Provides OciImageInfo.

Example:

```starlark
xm_oci_image(
    name = "python_base",
    layers = ["@debian_python//:packages", ":base_files"],
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
    user = "1000:1000",
)
```
""",
    attrs = dict({
        "base": attr.label(
            providers = [OciImageInfo],
            doc = "The image to build on (an xm_oci_image or xm_py_image). None: start from scratch.",
        ),
        "layers": attr.label_list(
            providers = [LayerInfo],
            doc = "Layers on top of the base, bottom first (xm_layer, or the `packages` layer of a " +
                  "Debian package repository).",
        ),
    }, **dict(image_config_attrs(), **image_tool_attrs())),
    provides = [OciImageInfo],
)
