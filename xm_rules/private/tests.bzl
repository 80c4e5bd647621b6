"""Test macros: the image validator and golden layer listings."""

load("@rules_python//python:defs.bzl", "py_binary", "py_test")
load(":providers.bzl", "OciImageInfo")

_TOOLS_LIB = Label("//xm_rules/tools:lib")

def _output(name, image, group):
    native.filegroup(
        name = "{}.{}".format(name, group),
        srcs = [image],
        output_group = group,
        testonly = True,
    )
    return ":{}.{}".format(name, group)

def xm_image_test(name, image, **kwargs):
    """Validates an image's tarball, OCI layout and digest file (`bazel test`).

    Runs the image validator (xm_rules/tools/validate_image.py): every blob's sha256 and size,
    diff_ids against the decompressed layers, no duplicate paths in a layer, config, history and
    manifests consistent, `index.json`, `oci-layout` and Docker's `manifest.json` correct, and the
    determinism rules of xm_rules (sorted entries, explicit parents, mtime 0, root owner).

    Example:

    ```starlark
    xm_image_test(
        name = "train_image_test",
        image = ":train_image",
    )
    ```

    Args:
      name: the test's name.
      image: an xm_oci_image or xm_py_image target.
      **kwargs: passed to the py_test (size, tags, ...).
    """
    tarball = _output(name, image, "tarball")
    layout = _output(name, image, "layout")
    digest = _output(name, image, "digest")
    kwargs.setdefault("size", "small")
    py_test(
        name = name,
        srcs = [Label("//xm_rules/tools:validate_image.py")],
        main = Label("//xm_rules/tools:validate_image.py"),
        deps = [_TOOLS_LIB],
        data = [tarball, layout, digest],
        args = [
            "--tarball=$(rootpath {})".format(tarball),
            "--layout=$(rootpath {})".format(layout),
            "--digest=$(rootpath {})".format(digest),
        ],
        **kwargs
    )

def _layer_listing_impl(ctx):
    image = ctx.attr.image[OciImageInfo]
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add("--out", out.path)
    for layer in image.layers:
        args.add("--layer", "{}={}".format(layer.name, layer.blob.path))
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = [layer.blob for layer in image.layers],
        outputs = [out],
        mnemonic = "XmLayerListing",
        progress_message = "Listing the layers of %{label}",
    )
    return [DefaultInfo(files = depset([out]))]

xm_layer_listing = rule(
    implementation = _layer_listing_impl,
    doc = "A directory with one listing per layer of an image: `NN_<layer>.txt`.",
    attrs = {
        "image": attr.label(mandatory = True, providers = [OciImageInfo], doc = "The image."),
        "_tool": attr.label(
            default = Label("//xm_rules/tools:list_layers"),
            executable = True,
            cfg = "exec",
        ),
    },
)

def xm_layer_golden_test(name, image, golden_dir = "golden", **kwargs):
    """Compares the listing of each layer of an image with committed golden files.

    Each golden file, `<golden_dir>/NN_<layer>.txt`, lists one layer's entries: path, mode,
    type, and the size and sha256 of files or the target of symlinks. After an intended change,
    rewrite them with `bazel run //<package>:<name>.update`.

    Example:

    ```starlark
    xm_layer_golden_test(
        name = "train_image_golden_test",
        image = ":train_image",
    )
    ```

    Args:
      name: the test's name; `<name>.update` rewrites the golden files.
      image: an xm_oci_image or xm_py_image target.
      golden_dir: the directory of the golden files, relative to this package.
      **kwargs: passed to the py_test (size, tags, ...).
    """
    package = native.package_name()
    listing = name + ".listing"
    xm_layer_listing(name = listing, image = image, testonly = True)
    args = [
        "--actual=$(rootpath :{})".format(listing),
        "--golden=" + (package + "/" if package else "") + golden_dir,
        "--update-command='bazel run //{}:{}.update'".format(package, name),
    ]
    kwargs.setdefault("size", "small")
    py_test(
        name = name,
        srcs = [Label("//xm_rules/tools:golden.py")],
        main = Label("//xm_rules/tools:golden.py"),
        data = [":" + listing] + native.glob([golden_dir + "/*.txt"], allow_empty = True),
        args = args,
        **kwargs
    )
    py_binary(
        name = name + ".update",
        srcs = [Label("//xm_rules/tools:golden.py")],
        main = Label("//xm_rules/tools:golden.py"),
        data = [":" + listing],
        args = args + ["--update"],
        testonly = True,
    )
