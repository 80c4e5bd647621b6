"""xm_oci_push: `bazel run` pushes an image to a registry (in the style of rules_oci's oci_push)."""

load("@rules_python//python:defs.bzl", "py_binary")

def xm_oci_push(name, image, repository = "", remote_tags = [], **kwargs):
    """A runnable target that pushes `image` to `repository` with each of `remote_tags`.

    ```
    xm_oci_push(
        name = "train_image_push",
        image = ":train_image",
        repository = "registry.example.com/my-project/train",
        remote_tags = ["latest"],
    )
    ```

    `bazel run //exp:train_image_push -- --tag=v2` pushes with the tag `v2` instead;
    `--repository=HOST/REPO` replaces the repository and `--registry=HOST:PORT` only its host;
    `--digest-file=PATH` writes the pushed digest. Only missing blobs are uploaded. Credentials:
    Docker's config.json (credential helpers too), `$REGISTRY_AUTH_FILE`, or application-default
    credentials for Google registries. The target is tagged `xm_oci_push`, so
    `bazel query 'attr(tags, xm_oci_push, //...)'` lists every push target (examples/ci).

    Args:
      name: the target's name.
      image: an xm_oci_image or xm_py_image target.
      repository: `registry/repository`, without tag.
      remote_tags: tags to push; none pushes by digest only.
      **kwargs: passed to the py_binary (visibility, tags, ...).
    """
    tarball = name + ".tarball"
    native.filegroup(
        name = tarball,
        srcs = [image],
        output_group = "tarball",
        visibility = ["//visibility:private"],
    )
    args = ["--image=$(rootpath :{})".format(tarball)]
    if repository:
        args.append("--default-repository=" + repository)
    args += ["--default-tag=" + tag for tag in remote_tags]
    kwargs["tags"] = kwargs.get("tags", []) + ["xm_oci_push"]
    py_binary(
        name = name,
        srcs = [Label("//xm_rules/tools:push.py")],
        main = Label("//xm_rules/tools:push.py"),
        deps = [Label("//xm_py:oci_registry")],
        data = [":" + tarball],
        args = args,
        **kwargs
    )
