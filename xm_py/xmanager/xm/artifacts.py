"""The concrete packaged executables that backends and clients create."""

from __future__ import annotations

import dataclasses

from xmanager.xm.job_blocks import Executable


@dataclasses.dataclass
class BinaryArtifact(Executable):
    """A binary file on the machine that runs it.

    Attributes:
      path: absolute path of the executable file.
      sha256: lowercase hex digest of its content at packaging time; empty skips the check.
    """

    path: str
    sha256: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"BinaryArtifact.path must be a non-empty str, got {self.path!r}.")
        if not isinstance(self.sha256, str):
            raise TypeError(f"BinaryArtifact.sha256 must be a str, got {self.sha256!r}.")


@dataclasses.dataclass
class ImageArtifact(Executable):
    """An OCI image: exactly one of an image tarball path or a registry/engine reference.

    Attributes:
      image_path: absolute path of an image tarball.
      image_ref: a reference such as 'registry/repo:tag' or 'repo@sha256:...'.
      digest: the manifest digest ('sha256:<hex>'); empty skips the check.
    """

    image_path: str | None = None
    image_ref: str | None = None
    digest: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.image_path is None) == (self.image_ref is None):
            raise ValueError(
                "ImageArtifact needs exactly one of image_path (a tarball) and image_ref (a "
                f"reference), got image_path={self.image_path!r}, image_ref={self.image_ref!r}."
            )
        source = self.image_path if self.image_path is not None else self.image_ref
        if not isinstance(source, str) or not source:
            raise ValueError(f"ImageArtifact source must be a non-empty str, got {source!r}.")
        if not isinstance(self.digest, str):
            raise TypeError(f"ImageArtifact.digest must be a str, got {self.digest!r}.")
