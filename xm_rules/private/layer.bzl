"""Layers: one action per layer writes the blob and its descriptor together."""

load(":actions.bzl", "run_tool")
load(":providers.bzl", "LayerInfo")

LAYER_TOOL = Label("//xm_rules/tools:layer")

def layer_tool_attrs():
    return {
        "_layer_tool": attr.label(
            default = LAYER_TOOL,
            executable = True,
            cfg = "exec",
        ),
    }

def write_layer(ctx, name, files = [], empty_files = [], symlinks = {}, directories = []):
    """Declares the action writing one layer and returns its LayerInfo.

    Args:
      ctx: the rule context; its rule must have `layer_tool_attrs()`.
      name: the layer's short name; outputs are `<target>.<name>.tar.gz` and
        `<target>.<name>.descriptor.json` (`<target>.tar.gz`... when the names are equal).
      files: list of (destination path, File, mode or None); the action's only file inputs.
      empty_files: list of destination paths of empty files.
      symlinks: dict destination path -> symlink target.
      directories: list of (path, octal mode string).
    Returns:
      LayerInfo.
    """
    prefix = ctx.label.name if name == ctx.label.name else ctx.label.name + "." + name
    spec = ctx.actions.declare_file(prefix + ".layer.json")
    blob = ctx.actions.declare_file(prefix + ".tar.gz")
    descriptor = ctx.actions.declare_file(prefix + ".descriptor.json")
    ctx.actions.write(spec, json.encode({
        "files": [
            {
                "path": path,
                "src": f.path,
                "mode": mode or "",
                "origin": str(f.owner),
                "generated": not f.is_source,
            }
            for path, f, mode in files
        ],
        "empty_files": empty_files,
        "symlinks": [{"path": p, "target": t} for p, t in symlinks.items()],
        "directories": [{"path": p, "mode": m} for p, m in directories],
    }))
    args = ctx.actions.args()
    args.add("--spec", spec)
    args.add("--label={} ({})".format(ctx.label, name))  # "=": labels start with @
    args.add("--blob", blob)
    args.add("--descriptor", descriptor)
    run_tool(
        ctx,
        ctx.executable._layer_tool,
        args,
        inputs = [spec] + [f for _, f, _ in files],
        outputs = [blob, descriptor],
        mnemonic = "XmLayer",
        progress_message = "Writing layer %{label} (" + name + ")",
    )
    return LayerInfo(name = name, blob = blob, descriptor = descriptor)

def _parse_directory(path, mode):
    """Checks a directory's mode: every entry of a layer is owned by root, so a mode is all."""
    if not mode.isdigit() or len(mode) not in (3, 4) or "8" in mode or "9" in mode:
        fail("directories[{}]: mode {} is not octal like 0755 or 1777".format(path, repr(mode)))
    return (path, mode)

def _xm_layer_impl(ctx):
    files = []
    for target, destination in ctx.attr.files.items():
        sources = target[DefaultInfo].files.to_list()
        if destination.endswith("/"):
            for f in sources:
                files.append((destination + f.basename, f, None))
        elif len(sources) == 1:
            files.append((destination, sources[0], None))
        else:
            fail(("files: {} has {} files; map it to a directory (a destination ending " +
                  "with '/') or to a single file").format(target.label, len(sources)))
    modes = dict(ctx.attr.modes)
    resolved = []
    for destination, f, _ in files:
        resolved.append((destination, f, modes.pop(destination, None)))
    if modes:
        fail("modes: {} not among the files of this layer".format(", ".join(sorted(modes))))
    layer = write_layer(
        ctx,
        ctx.attr.layer_name or ctx.label.name,
        files = resolved,
        empty_files = ctx.attr.empty_files,
        symlinks = ctx.attr.symlinks,
        directories = [_parse_directory(p, v) for p, v in ctx.attr.directories.items()],
    )
    return [
        layer,
        DefaultInfo(files = depset([layer.blob, layer.descriptor])),
    ]

xm_layer = rule(
    implementation = _xm_layer_impl,
    doc = """A deterministic image layer from files, symlinks, directories and empty files.

One action writes the layer (`<name>.tar.gz`: PAX tar, entries sorted, explicit parent
directories, mtime 0, uid and gid 0 with empty names, gzip without name or timestamp) and its
descriptor (media type, digest, size, diff_id). A path given twice is an error.

Example:

```starlark
xm_layer(
    name = "base_files",
    files = {
        ":passwd": "/etc/passwd",
        ":group": "/etc/group",
    },
    directories = {"/tmp": "1777"},
    symlinks = {"/etc/localtime": "/usr/share/zoneinfo/Etc/UTC"},
)
```
""",
    attrs = dict({
        "files": attr.label_keyed_string_dict(
            allow_files = True,
            doc = "Sources and where they go: an absolute path for a single file, or a " +
                  "directory ending with `/` to place each of a target's files by its base name. " +
                  "Modes: 0755 for executables (a source file's executable bit; a generated " +
                  "file's `#!` or ELF header), else 0644, unless `modes` says otherwise.",
        ),
        "modes": attr.string_dict(
            doc = "Octal modes of some of `files`, by destination path, e.g. `{\"/etc/shadow\": \"0640\"}`.",
        ),
        "symlinks": attr.string_dict(
            doc = "Symlinks: path -> target, kept verbatim (relative or absolute).",
        ),
        "directories": attr.string_dict(
            doc = "Directories: path -> octal mode, e.g. `{\"/tmp\": \"1777\"}`. Parent " +
                  "directories not listed are 0755. Every entry is owned by root (uid and gid 0).",
        ),
        "empty_files": attr.string_list(
            doc = "Paths of empty regular files (mode 0644).",
        ),
        "layer_name": attr.string(
            doc = "The layer's short name in history entries and golden listings; default: the target's name.",
        ),
    }, **layer_tool_attrs()),
    provides = [LayerInfo],
)
