"""The Kubernetes backend: work units as gangs of batch/v1 Jobs (see docs/kubernetes.md)."""
