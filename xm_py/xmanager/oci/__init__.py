"""OCI images without a container engine: one library for the client, the daemon and the rules.

- `spec`: media types, digests, canonical JSON, blob paths.
- `layers`: deterministic layer tarballs (the bytes depend only on the entries).
- `image`: reading an image from a tarball (`docker save` or OCI layout) or a layout directory.
- `registry`, `auth`: the OCI distribution API (push and pull) and registry credentials.

Standard library only, except `registry` and `auth` (which use `requests`), so the Bazel rules'
tools can use `spec`, `layers` and `image` without third-party wheels.
"""
