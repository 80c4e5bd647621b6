"""A node agent (a small kubelet) running pods' containers on Docker Engine.

A genuine API client: it registers a Node, watches the pods bound to it through the official
`kubernetes` client, and reports their status back, so it runs against the emulator and a real
API server alike. `python -m tests.fakes.node_agent --kubeconfig=... --node=...`.
"""
