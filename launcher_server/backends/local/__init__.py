"""Local jobs: binaries run as processes under per-job supervisors."""
