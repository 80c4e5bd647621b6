"""A Python toolchain for the machine's own CPython 3.11.

Hermetic interpreters cannot be downloaded here (only package registries are reachable), and the
third-party wheels in requirements.lock are built for CPython 3.11, so builds use the machine's
Python 3.11 and fail early, with instructions, when it is missing or of another version.
"""

_PYTHON_VERSION = "3.11"

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

exports_files(["python3"])

py_runtime(
    name = "runtime",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _find_interpreter(rctx):
    override = rctx.os.environ.get("XM_BAZEL_PYTHON", "")
    if override:
        return rctx.path(override)
    for candidate in ["/usr/bin/python" + _PYTHON_VERSION, "/usr/local/bin/python" + _PYTHON_VERSION]:
        path = rctx.path(candidate)
        if path.exists:
            return path
    return rctx.which("python" + _PYTHON_VERSION)

def _local_python_repo_impl(rctx):
    interpreter = _find_interpreter(rctx)
    if not interpreter or not interpreter.exists:
        fail(("Python {v} not found. Install it (Debian: apt-get install python{v}) or point " +
              "XM_BAZEL_PYTHON at a CPython {v} interpreter (bazel ... --repo_env=XM_BAZEL_PYTHON=PATH).")
            .format(v = _PYTHON_VERSION))
    result = rctx.execute([interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    version = result.stdout.strip()
    if result.return_code != 0 or version != _PYTHON_VERSION:
        fail("{} is Python {}, but the locked wheels need CPython {}; set XM_BAZEL_PYTHON.".format(
            interpreter,
            version or "(unknown)",
            _PYTHON_VERSION,
        ))
    rctx.symlink(interpreter, "python3")
    rctx.file("BUILD.bazel", _BUILD.format(interpreter = str(interpreter)))

local_python_repo = repository_rule(
    implementation = _local_python_repo_impl,
    environ = ["XM_BAZEL_PYTHON"],
    doc = "Wraps the machine's CPython 3.11 as a py_runtime toolchain.",
)

def _local_python_impl(_module_ctx):
    local_python_repo(name = "local_python")

local_python = module_extension(
    implementation = _local_python_impl,
    doc = "Creates @local_python, the machine's CPython 3.11 as a Python toolchain.",
)
