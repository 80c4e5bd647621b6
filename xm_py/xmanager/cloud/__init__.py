"""Google Cloud helpers with XManager's module names (`xmanager.cloud.vertex`, `.auth`, `.utils`,
`.build_image`). Jobs themselves are created by the launcher daemon, not by these modules."""
