import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_STARTING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLING: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_LOST: _ClassVar[JobState]

class EventSubject(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_SUBJECT_UNSPECIFIED: _ClassVar[EventSubject]
    EVENT_SUBJECT_EXPERIMENT: _ClassVar[EventSubject]
    EVENT_SUBJECT_WORK_UNIT: _ClassVar[EventSubject]
    EVENT_SUBJECT_JOB: _ClassVar[EventSubject]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_STARTING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLING: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_LOST: JobState
EVENT_SUBJECT_UNSPECIFIED: EventSubject
EVENT_SUBJECT_EXPERIMENT: EventSubject
EVENT_SUBJECT_WORK_UNIT: EventSubject
EVENT_SUBJECT_JOB: EventSubject
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream

class JobStatus(_message.Message):
    __slots__ = ("state", "native_state", "reason", "has_exit_code", "exit_code", "start_time", "end_time", "update_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    NATIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    native_state: str
    reason: str
    has_exit_code: bool
    exit_code: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., native_state: _Optional[str] = ..., reason: _Optional[str] = ..., has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "time", "subject", "experiment_id", "work_unit_id", "job_name", "old_state", "new_state", "message")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_STATE_FIELD_NUMBER: _ClassVar[int]
    NEW_STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    subject: EventSubject
    experiment_id: int
    work_unit_id: int
    job_name: str
    old_state: JobState
    new_state: JobState
    message: str
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[_Union[EventSubject, str]] = ..., experiment_id: _Optional[int] = ..., work_unit_id: _Optional[int] = ..., job_name: _Optional[str] = ..., old_state: _Optional[_Union[JobState, str]] = ..., new_state: _Optional[_Union[JobState, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("id", "title", "tags", "notes", "creator", "create_time", "update_time", "launch_script_path", "launch_script_sha256", "source_revision", "work_unit_count", "work_unit_state_counts")
    class WorkUnitStateCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_SCRIPT_PATH_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_SCRIPT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_STATE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    title: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    creator: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    launch_script_path: str
    launch_script_sha256: str
    source_revision: str
    work_unit_count: int
    work_unit_state_counts: _containers.ScalarMap[int, int]
    def __init__(self, id: _Optional[int] = ..., title: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., launch_script_path: _Optional[str] = ..., launch_script_sha256: _Optional[str] = ..., source_revision: _Optional[str] = ..., work_unit_count: _Optional[int] = ..., work_unit_state_counts: _Optional[_Mapping[int, int]] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("experiment", "request_id")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    request_id: str
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    def __init__(self, experiment_id: _Optional[int] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "title_contains", "tags", "creator", "has_work_unit_in_state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TITLE_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    HAS_WORK_UNIT_IN_STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    title_contains: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    creator: str
    has_work_unit_in_state: _containers.RepeatedScalarFieldContainer[JobState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., title_contains: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., creator: _Optional[str] = ..., has_work_unit_in_state: _Optional[_Iterable[_Union[JobState, str]]] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments", "next_page_token")
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    next_page_token: str
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateExperimentRequest(_message.Message):
    __slots__ = ("experiment_id", "title", "tags", "notes", "update_mask")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    title: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    update_mask: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, experiment_id: _Optional[int] = ..., title: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ..., update_mask: _Optional[_Iterable[str]] = ...) -> None: ...

class LocalBinary(_message.Message):
    __slots__ = ("path", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class OciImage(_message.Message):
    __slots__ = ("tarball_path", "reference", "digest")
    TARBALL_PATH_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    tarball_path: str
    reference: str
    digest: str
    def __init__(self, tarball_path: _Optional[str] = ..., reference: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("local_binary", "oci_image", "bazel_label")
    LOCAL_BINARY_FIELD_NUMBER: _ClassVar[int]
    OCI_IMAGE_FIELD_NUMBER: _ClassVar[int]
    BAZEL_LABEL_FIELD_NUMBER: _ClassVar[int]
    local_binary: LocalBinary
    oci_image: OciImage
    bazel_label: str
    def __init__(self, local_binary: _Optional[_Union[LocalBinary, _Mapping]] = ..., oci_image: _Optional[_Union[OciImage, _Mapping]] = ..., bazel_label: _Optional[str] = ...) -> None: ...

class DockerOptions(_message.Message):
    __slots__ = ("ports", "volumes", "interactive", "all_interfaces")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class VolumesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PORTS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_FIELD_NUMBER: _ClassVar[int]
    ALL_INTERFACES_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.ScalarMap[int, int]
    volumes: _containers.ScalarMap[str, str]
    interactive: bool
    all_interfaces: bool
    def __init__(self, ports: _Optional[_Mapping[int, int]] = ..., volumes: _Optional[_Mapping[str, str]] = ..., interactive: _Optional[bool] = ..., all_interfaces: _Optional[bool] = ...) -> None: ...

class LocalExecutor(_message.Message):
    __slots__ = ("docker_options", "gpus", "stream_output", "clean_environment")
    DOCKER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    STREAM_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    docker_options: DockerOptions
    gpus: int
    stream_output: bool
    clean_environment: bool
    def __init__(self, docker_options: _Optional[_Union[DockerOptions, _Mapping]] = ..., gpus: _Optional[int] = ..., stream_output: _Optional[bool] = ..., clean_environment: _Optional[bool] = ...) -> None: ...

class VertexExecutor(_message.Message):
    __slots__ = ("project", "region", "machine_type", "accelerator_type", "accelerator_count", "replica_count", "service_account", "output_directory", "tensorboard", "api_endpoint", "network")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MACHINE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    TENSORBOARD_FIELD_NUMBER: _ClassVar[int]
    API_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    project: str
    region: str
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    replica_count: int
    service_account: str
    output_directory: str
    tensorboard: str
    api_endpoint: str
    network: str
    def __init__(self, project: _Optional[str] = ..., region: _Optional[str] = ..., machine_type: _Optional[str] = ..., accelerator_type: _Optional[str] = ..., accelerator_count: _Optional[int] = ..., replica_count: _Optional[int] = ..., service_account: _Optional[str] = ..., output_directory: _Optional[str] = ..., tensorboard: _Optional[str] = ..., api_endpoint: _Optional[str] = ..., network: _Optional[str] = ...) -> None: ...

class Toleration(_message.Message):
    __slots__ = ("key", "operator", "value", "effect", "toleration_seconds")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    TOLERATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    value: str
    effect: str
    toleration_seconds: int
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., value: _Optional[str] = ..., effect: _Optional[str] = ..., toleration_seconds: _Optional[int] = ...) -> None: ...

class KubernetesExecutor(_message.Message):
    __slots__ = ("namespace", "context", "service_account", "node_selector", "tolerations", "priority_class", "image_pull_secrets", "active_deadline_seconds", "cloud_provider", "backoff_limit", "tpu_runtime_version")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_SECRETS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLOUD_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPU_RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    context: str
    service_account: str
    node_selector: _containers.ScalarMap[str, str]
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    priority_class: str
    image_pull_secrets: _containers.RepeatedScalarFieldContainer[str]
    active_deadline_seconds: int
    cloud_provider: str
    backoff_limit: int
    tpu_runtime_version: str
    def __init__(self, namespace: _Optional[str] = ..., context: _Optional[str] = ..., service_account: _Optional[str] = ..., node_selector: _Optional[_Mapping[str, str]] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., priority_class: _Optional[str] = ..., image_pull_secrets: _Optional[_Iterable[str]] = ..., active_deadline_seconds: _Optional[int] = ..., cloud_provider: _Optional[str] = ..., backoff_limit: _Optional[int] = ..., tpu_runtime_version: _Optional[str] = ...) -> None: ...

class Executor(_message.Message):
    __slots__ = ("local", "vertex", "kubernetes")
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    VERTEX_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_FIELD_NUMBER: _ClassVar[int]
    local: LocalExecutor
    vertex: VertexExecutor
    kubernetes: KubernetesExecutor
    def __init__(self, local: _Optional[_Union[LocalExecutor, _Mapping]] = ..., vertex: _Optional[_Union[VertexExecutor, _Mapping]] = ..., kubernetes: _Optional[_Union[KubernetesExecutor, _Mapping]] = ...) -> None: ...

class Accelerator(_message.Message):
    __slots__ = ("type", "count", "topology")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    topology: str
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ..., topology: _Optional[str] = ...) -> None: ...

class ResourceRequirements(_message.Message):
    __slots__ = ("cpu", "memory_bytes", "ephemeral_storage_bytes", "accelerator", "replicas", "location", "other")
    class OtherEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory_bytes: int
    ephemeral_storage_bytes: int
    accelerator: Accelerator
    replicas: int
    location: str
    other: _containers.ScalarMap[str, float]
    def __init__(self, cpu: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., ephemeral_storage_bytes: _Optional[int] = ..., accelerator: _Optional[_Union[Accelerator, _Mapping]] = ..., replicas: _Optional[int] = ..., location: _Optional[str] = ..., other: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("name", "artifact", "args", "env", "executor", "requirements", "status", "backend_handle", "log_location", "launch_context_digest")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_HANDLE_FIELD_NUMBER: _ClassVar[int]
    LOG_LOCATION_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_CONTEXT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    artifact: Artifact
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    executor: Executor
    requirements: ResourceRequirements
    status: JobStatus
    backend_handle: str
    log_location: str
    launch_context_digest: str
    def __init__(self, name: _Optional[str] = ..., artifact: _Optional[_Union[Artifact, _Mapping]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., executor: _Optional[_Union[Executor, _Mapping]] = ..., requirements: _Optional[_Union[ResourceRequirements, _Mapping]] = ..., status: _Optional[_Union[JobStatus, _Mapping]] = ..., backend_handle: _Optional[str] = ..., log_location: _Optional[str] = ..., launch_context_digest: _Optional[str] = ...) -> None: ...

class LaunchContext(_message.Message):
    __slots__ = ("working_directory", "env")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    working_directory: str
    env: _containers.ScalarMap[str, str]
    def __init__(self, working_directory: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkUnit(_message.Message):
    __slots__ = ("experiment_id", "work_unit_id", "args_json", "jobs", "status", "identity", "create_time")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    work_unit_id: int
    args_json: str
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    status: JobStatus
    identity: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, experiment_id: _Optional[int] = ..., work_unit_id: _Optional[int] = ..., args_json: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., status: _Optional[_Union[JobStatus, _Mapping]] = ..., identity: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddWorkUnitRequest(_message.Message):
    __slots__ = ("experiment_id", "jobs", "args_json", "identity", "request_id", "work_unit_id", "launch_context", "launch_context_digest")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_CONTEXT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    args_json: str
    identity: str
    request_id: str
    work_unit_id: int
    launch_context: LaunchContext
    launch_context_digest: str
    def __init__(self, experiment_id: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., args_json: _Optional[str] = ..., identity: _Optional[str] = ..., request_id: _Optional[str] = ..., work_unit_id: _Optional[int] = ..., launch_context: _Optional[_Union[LaunchContext, _Mapping]] = ..., launch_context_digest: _Optional[str] = ...) -> None: ...

class AddWorkUnitsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AddWorkUnitRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AddWorkUnitRequest, _Mapping]]] = ...) -> None: ...

class AddWorkUnitsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AddWorkUnitResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AddWorkUnitResult, _Mapping]]] = ...) -> None: ...

class AddWorkUnitResult(_message.Message):
    __slots__ = ("request_id", "work_unit", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    work_unit: WorkUnit
    error_code: int
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., work_unit: _Optional[_Union[WorkUnit, _Mapping]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class GetWorkUnitRequest(_message.Message):
    __slots__ = ("experiment_id", "work_unit_id")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    work_unit_id: int
    def __init__(self, experiment_id: _Optional[int] = ..., work_unit_id: _Optional[int] = ...) -> None: ...

class ListWorkUnitsRequest(_message.Message):
    __slots__ = ("experiment_id", "page_size", "page_token", "states")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[JobState]
    def __init__(self, experiment_id: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ...) -> None: ...

class ListWorkUnitsResponse(_message.Message):
    __slots__ = ("work_units", "next_page_token")
    WORK_UNITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    work_units: _containers.RepeatedCompositeFieldContainer[WorkUnit]
    next_page_token: str
    def __init__(self, work_units: _Optional[_Iterable[_Union[WorkUnit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchWorkUnitsRequest(_message.Message):
    __slots__ = ("experiment_id", "after_sequence", "until_all_final", "states", "work_unit_ids")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_ALL_FINAL_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    after_sequence: int
    until_all_final: bool
    states: _containers.RepeatedScalarFieldContainer[JobState]
    work_unit_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, experiment_id: _Optional[int] = ..., after_sequence: _Optional[int] = ..., until_all_final: _Optional[bool] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ..., work_unit_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class WatchWorkUnitsResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[WorkUnitUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[WorkUnitUpdate, _Mapping]]] = ...) -> None: ...

class WorkUnitUpdate(_message.Message):
    __slots__ = ("event", "work_unit")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    work_unit: WorkUnit
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ..., work_unit: _Optional[_Union[WorkUnit, _Mapping]] = ...) -> None: ...

class StreamLogsRequest(_message.Message):
    __slots__ = ("experiment_id", "work_unit_id", "job_name", "stream", "offset", "follow")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    work_unit_id: int
    job_name: str
    stream: LogStream
    offset: int
    follow: bool
    def __init__(self, experiment_id: _Optional[int] = ..., work_unit_id: _Optional[int] = ..., job_name: _Optional[str] = ..., stream: _Optional[_Union[LogStream, str]] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("offset", "data", "truncated")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    truncated: bool
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., truncated: _Optional[bool] = ...) -> None: ...

class CancelWorkUnitRequest(_message.Message):
    __slots__ = ("experiment_id", "work_unit_id", "grace_period_seconds", "reason")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORK_UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    work_unit_id: int
    grace_period_seconds: int
    reason: str
    def __init__(self, experiment_id: _Optional[int] = ..., work_unit_id: _Optional[int] = ..., grace_period_seconds: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelWorkUnitResponse(_message.Message):
    __slots__ = ("work_unit",)
    WORK_UNIT_FIELD_NUMBER: _ClassVar[int]
    work_unit: WorkUnit
    def __init__(self, work_unit: _Optional[_Union[WorkUnit, _Mapping]] = ...) -> None: ...

class CancelExperimentRequest(_message.Message):
    __slots__ = ("experiment_id", "grace_period_seconds", "reason")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    grace_period_seconds: int
    reason: str
    def __init__(self, experiment_id: _Optional[int] = ..., grace_period_seconds: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelExperimentResponse(_message.Message):
    __slots__ = ("cancelled_work_units",)
    CANCELLED_WORK_UNITS_FIELD_NUMBER: _ClassVar[int]
    cancelled_work_units: int
    def __init__(self, cancelled_work_units: _Optional[int] = ...) -> None: ...

class DeleteExperimentRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: int
    def __init__(self, experiment_id: _Optional[int] = ...) -> None: ...

class DeleteExperimentResponse(_message.Message):
    __slots__ = ("deleted_work_units",)
    DELETED_WORK_UNITS_FIELD_NUMBER: _ClassVar[int]
    deleted_work_units: int
    def __init__(self, deleted_work_units: _Optional[int] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackendInfo(_message.Message):
    __slots__ = ("name", "available", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "api_version", "backends", "capabilities", "store", "pid", "start_time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    version: str
    api_version: str
    backends: _containers.RepeatedCompositeFieldContainer[BackendInfo]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    store: str
    pid: int
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[str] = ..., api_version: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[BackendInfo, _Mapping]]] = ..., capabilities: _Optional[_Iterable[str]] = ..., store: _Optional[str] = ..., pid: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
