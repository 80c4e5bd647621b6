"""The local container backend (`backend.LocalContainerBackend`): jobs' OCI images run by Docker
Engine. One module per concept: engine (connection, errors), images, networks, options (names
and create options), following and log_stream (output and exit), job_records, cleanup."""
