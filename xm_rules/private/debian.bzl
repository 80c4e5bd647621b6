"""Debian packages: the repository rule that downloads a lock's .debs, and rules using them."""

load("@rules_python//python:defs.bzl", "py_binary")
load(":layer.bzl", "write_layer")
load(":providers.bzl", "LayerInfo")

_ARCHIVES = ["debian", "debian-security"]
_MIRROR_ENV = {"debian": "XM_DEBIAN_MIRROR", "debian-security": "XM_DEBIAN_SECURITY_MIRROR"}
_LOCK_KEYS = ["name", "version", "architecture", "archive", "path", "sha256"]
_HEX = "0123456789abcdef"

# --- The machine's apt sources ----------------------------------------------------------------

def _words(text):
    """Whitespace-separated words (Starlark's split needs a separator)."""
    return [w for w in text.replace("\t", " ").split(" ") if w]

def _archive_of(suites):
    for suite in suites:
        if suite.endswith("-security") or suite.endswith("/updates"):
            return "debian-security"
    return "debian"

def _one_line_sources(text):
    sources = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        words = _words(line)
        if len(words) < 3 or words[0] != "deb":
            continue
        words = words[1:]
        if words[0].startswith("["):
            # Options: `[arch=amd64 signed-by=/path]`, possibly over several words.
            ends = [i for i, word in enumerate(words) if word.endswith("]")]
            words = words[ends[0] + 1:] if ends else []
        if len(words) >= 2:
            sources.append((words[0], [words[1]]))
    return sources

def _deb822_sources(text):
    sources = []
    for paragraph in text.replace("\r", "").split("\n\n"):
        fields = {}
        for line in paragraph.split("\n"):
            if not line or line.startswith("#") or line[0] in " \t" or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
        if "deb" not in _words(fields.get("Types", "")):
            continue
        if fields.get("Enabled", "yes").lower() == "no":
            continue
        for uri in _words(fields.get("URIs", "")):
            sources.append((uri, _words(fields.get("Suites", ""))))
    return sources

def apt_mirrors(rctx):
    """Per archive ("debian", "debian-security"), candidate mirror URLs: overrides, then apt's."""
    mirrors = {archive: [] for archive in _ARCHIVES}
    for archive in _ARCHIVES:
        override = rctx.os.environ.get(_MIRROR_ENV[archive], "").strip()
        if override:
            mirrors[archive].append(override.rstrip("/"))
    sources = []
    listing = rctx.path("/etc/apt/sources.list")
    if listing.exists:
        sources += _one_line_sources(rctx.read(listing))
    directory = rctx.path("/etc/apt/sources.list.d")
    if directory.exists:
        for entry in sorted(directory.readdir(), key = lambda p: p.basename):
            if entry.basename.endswith(".list"):
                sources += _one_line_sources(rctx.read(entry))
            elif entry.basename.endswith(".sources"):
                sources += _deb822_sources(rctx.read(entry))
    for uri, suites in sources:
        archive = _archive_of(suites)
        uri = uri.rstrip("/")
        if uri not in mirrors[archive]:
            mirrors[archive].append(uri)
    return mirrors

# --- The repository rule ----------------------------------------------------------------------

def _check_lock(lock, where):
    if type(lock) != "dict" or type(lock.get("packages")) != "list":
        fail("{}: not a Debian package lock (no \"packages\" list)".format(where))
    names = {}
    for number, package in enumerate(lock["packages"]):
        for key in _LOCK_KEYS:
            if type(package.get(key)) != "string" or not package.get(key):
                fail("{}: package #{} ({}) has no {}".format(where, number, package.get("name", "?"), key))
        name = package["name"]
        if name in names:
            fail("{}: package {} is locked twice".format(where, name))
        names[name] = True
        sha = package["sha256"]
        if len(sha) != 64 or [c for c in sha.elems() if c not in _HEX]:
            fail("{}: package {}: sha256 {} is not 64 lowercase hex digits".format(where, name, repr(sha)))
        if package["archive"] not in _ARCHIVES:
            fail("{}: package {}: archive {} is not one of {}".format(where, name, repr(package["archive"]), _ARCHIVES))
        path = package["path"]
        if not path.startswith("pool/") or not path.endswith(".deb") or ".." in path or "://" in path:
            fail("{}: package {}: path {} is not a .deb in the archive's pool/".format(where, name, repr(path)))
        if package["architecture"] not in (lock.get("architecture", "amd64"), "all"):
            fail("{}: package {} is for {}, the lock for {}".format(
                where,
                name,
                package["architecture"],
                lock.get("architecture", "amd64"),
            ))

def _download_error(rctx, package, urls, where):
    probe = rctx.download(url = urls, output = "probe/" + package["name"] + ".deb", allow_fail = True)
    if probe.success:
        return ("{}: package {} {}: the mirror's file has sha256 {}, but the lock says {}. The lock " +
                "or the mirror is wrong; regenerate the lock (docs/rules.md, \"Debian base " +
                "images\").").format(where, package["name"], package["version"], probe.sha256, package["sha256"])
    return ("{}: package {} {} could not be downloaded from {}. Old versions leave the archive's " +
            "pool after point releases: regenerate the lock (docs/rules.md, \"Debian base " +
            "images\"), or point --repo_env={} at a mirror that has it.").format(
        where,
        package["name"],
        package["version"],
        ", ".join(urls),
        _MIRROR_ENV[package["archive"]],
    )

def _xm_deb_packages_impl(rctx):
    where = str(rctx.attr.lock)
    lock = json.decode(rctx.read(rctx.attr.lock))
    _check_lock(lock, where)
    mirrors = apt_mirrors(rctx)
    pending = []
    for package in lock["packages"]:
        urls = [m + "/" + package["path"] for m in mirrors[package["archive"]]]
        if not urls:
            fail(("{}: no mirror for the {} archive: add an apt source for it, or set " +
                  "--repo_env={}=<URL>").format(where, package["archive"], _MIRROR_ENV[package["archive"]]))
        output = "debs/{}.deb".format(package["name"])
        token = rctx.download(
            url = urls,
            output = output,
            sha256 = package["sha256"],
            allow_fail = True,
            block = False,
        )
        pending.append((package, urls, token))
    for package, urls, token in pending:
        if not token.wait().success:
            fail(_download_error(rctx, package, urls, where))

    debs = ",\n".join([
        '        "{name}": "debs/{name}.deb"'.format(name = p["name"])
        for p in lock["packages"]
    ])
    aliases = "\n".join([
        'alias(name = "{name}", actual = "debs/{name}.deb")'.format(name = p["name"])
        for p in lock["packages"]
    ])
    rctx.file("BUILD.bazel", """\
# Generated from {lock}: one target per .deb, and `packages`, the layer of all of them.
load("{defs}", "xm_deb_layer")

package(default_visibility = ["//visibility:public"])

exports_files(glob(["debs/*.deb"]))

xm_deb_layer(
    name = "packages",
    debs = {{
{debs},
    }},
)

{aliases}
""".format(lock = where, defs = str(Label("//xm_rules/private:debian.bzl")), debs = debs, aliases = aliases))

xm_deb_packages = repository_rule(
    implementation = _xm_deb_packages_impl,
    doc = """Downloads the .deb files of a lock through Bazel's downloader, checking their sha256.

The mirror of each archive comes from the machine's apt sources (`/etc/apt/sources.list`,
`/etc/apt/sources.list.d/*.list` and `*.sources`; sources whose suites end in `-security` serve
the `debian-security` archive, the others the `debian` archive), or from
`--repo_env=XM_DEBIAN_MIRROR=URL` and `--repo_env=XM_DEBIAN_SECURITY_MIRROR=URL`, tried first.
The repository holds `debs/<package>.deb`, an alias per package name and `:packages`, an
xm_deb_layer of all of them.
""",
    attrs = {
        "lock": attr.label(
            mandatory = True,
            allow_single_file = [".json"],
            doc = "The lock file written by an xm_deb_lock target.",
        ),
    },
    environ = ["XM_DEBIAN_MIRROR", "XM_DEBIAN_SECURITY_MIRROR"],
)

# --- Rules on the downloaded packages ---------------------------------------------------------

def _xm_deb_layer_impl(ctx):
    name = ctx.attr.layer_name or ctx.label.name
    prefix = ctx.label.name
    blob = ctx.actions.declare_file(prefix + ".tar.gz")
    descriptor = ctx.actions.declare_file(prefix + ".descriptor.json")
    args = ctx.actions.args()
    debs = []
    for package, target in ctx.attr.debs.items():
        deb = target[DefaultInfo].files.to_list()
        if len(deb) != 1 or not deb[0].path.endswith(".deb"):
            fail("debs[{}]: {} is not a single .deb file".format(package, target.label))
        args.add("--deb", "{}={}".format(package, deb[0].path))
        debs.append(deb[0])
    if ctx.attr.keep_docs:
        args.add("--keep-docs")
    args.add("--blob", blob)
    args.add("--descriptor", descriptor)
    ctx.actions.run(
        executable = ctx.executable._deb_layer_tool,
        arguments = [args],
        inputs = debs,
        outputs = [blob, descriptor],
        mnemonic = "XmDebLayer",
        progress_message = "Unpacking %{{label}}: {} Debian packages into a layer".format(len(debs)),
    )
    layer = LayerInfo(name = name, blob = blob, descriptor = descriptor)
    return [layer, DefaultInfo(files = depset([blob, descriptor]))]

xm_deb_layer = rule(
    implementation = _xm_deb_layer_impl,
    doc = """One layer of the data archives of Debian packages; no maintainer script runs.

The layer is a merged-/usr tree (`/bin`, `/sbin`, `/lib`, `/lib64` are symlinks into `/usr`;
files packages ship under them move to `/usr`), hard links become files, each package's control
paragraph goes to `/var/lib/dpkg/status.d/<package>`, and documentation other than copyright
files is dropped. A path shipped twice with different contents is an error naming both
packages. The repositories of `xm_deb_packages` define one as `:packages`.

Example:

```starlark
xm_deb_layer(
    name = "tools",
    debs = {"busybox": "@debian_tools//:busybox"},
)
```
""",
    attrs = {
        "debs": attr.string_keyed_label_dict(
            allow_files = [".deb"],
            mandatory = True,
            doc = "Package name -> its .deb, in install order (later packages may not " +
                  "overwrite earlier files).",
        ),
        "keep_docs": attr.bool(
            default = False,
            doc = "Keep /usr/share/doc, man and info pages and the like.",
        ),
        "layer_name": attr.string(doc = "The layer's short name; default: the target's name."),
        "_deb_layer_tool": attr.label(
            default = Label("//xm_rules/tools:deb_layer"),
            executable = True,
            cfg = "exec",
        ),
    },
    provides = [LayerInfo],
)

def _xm_deb_ca_bundle_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".crt")
    ctx.actions.run(
        executable = ctx.executable._ca_bundle_tool,
        arguments = ["--deb", ctx.file.deb.path, "--out", out.path],
        inputs = [ctx.file.deb],
        outputs = [out],
        mnemonic = "XmCaBundle",
        progress_message = "Concatenating the CA certificates of %{label}",
    )
    return [DefaultInfo(files = depset([out]))]

xm_deb_ca_bundle = rule(
    implementation = _xm_deb_ca_bundle_impl,
    doc = """`/etc/ssl/certs/ca-certificates.crt` as the ca-certificates postinst would build it.

Concatenates `/usr/share/ca-certificates/mozilla/*.crt` of the ca-certificates .deb in file-name
order. Put the output into an xm_layer at `/etc/ssl/certs/ca-certificates.crt`.

Example:

```starlark
xm_deb_ca_bundle(
    name = "ca_bundle",
    deb = "@debian_python//:ca-certificates",
)
```
""",
    attrs = {
        "deb": attr.label(
            mandatory = True,
            allow_single_file = [".deb"],
            doc = "The ca-certificates .deb.",
        ),
        "_ca_bundle_tool": attr.label(
            default = Label("//xm_rules/tools:ca_bundle"),
            executable = True,
            cfg = "exec",
        ),
    },
)

def xm_deb_lock(name, lock, packages, exclude = [], distribution = "bookworm", architecture = "amd64", **kwargs):
    """A target that regenerates a Debian package lock: `bazel run //<package>:<name>`.

    Reads the Packages indices of `distribution`, `<distribution>-updates` and
    `<distribution>-security` from the machine's apt mirrors (or XM_DEBIAN_MIRROR and
    XM_DEBIAN_SECURITY_MIRROR), checks them against their signed InRelease files, resolves the
    dependencies of `packages` (newest versions; Pre-Depends and Depends, first alternative,
    Provides for virtual packages) and writes `lock`. Needs the network; building does not.

    Example:

    ```starlark
    xm_deb_lock(
        name = "python_lock.update",
        lock = "python.lock.json",
        packages = ["python3", "ca-certificates"],
        exclude = ["debconf", "dpkg"],
    )
    ```

    Args:
      name: the target's name, e.g. `python_lock.update`.
      lock: the lock file to write, in this package (e.g. `python.lock.json`).
      packages: root package names.
      exclude: packages not to install although something depends on them (those only
        maintainer scripts need, such as debconf and dpkg).
      distribution: the Debian release, e.g. `bookworm`.
      architecture: the Debian architecture, e.g. `amd64`.
      **kwargs: passed to the py_binary (e.g. visibility, tags).
    """
    package = native.package_name()
    path = (package + "/" if package else "") + lock
    args = ["--output", path, "--distribution", distribution, "--arch", architecture]
    args.append("--command='bazel run //{}:{}'".format(package, name))
    for root in packages:
        args += ["--package", root]
    for excluded in exclude:
        args += ["--exclude", excluded]
    py_binary(
        name = name,
        srcs = [Label("//xm_rules/tools:deb_lock.py")],
        main = Label("//xm_rules/tools:deb_lock.py"),
        deps = [Label("//xm_rules/tools:lib")],
        args = args,
        **kwargs
    )
