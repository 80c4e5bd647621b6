"""Module extensions of xm_rules.

```starlark
debian = use_extension("//xm_rules:extensions.bzl", "debian")
debian.lock(name = "debian_python", lock = "//xm_rules/debian:python.lock.json")
use_repo(debian, "debian_python")
```
"""

load("//xm_rules/private:debian.bzl", "xm_deb_packages")

_lock = tag_class(
    doc = "A repository of the .deb files of a lock written by an xm_deb_lock target.",
    attrs = {
        "name": attr.string(mandatory = True, doc = "The repository's name."),
        "lock": attr.label(mandatory = True, doc = "The lock file (JSON)."),
    },
)

def _debian_impl(module_ctx):
    for module in module_ctx.modules:
        for tag in module.tags.lock:
            xm_deb_packages(name = tag.name, lock = tag.lock)

debian = module_extension(
    implementation = _debian_impl,
    tag_classes = {"lock": _lock},
    doc = "Creates one xm_deb_packages repository per `debian.lock` tag.",
)
