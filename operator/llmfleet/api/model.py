"""``LLMModel``: a served model, its runtime and its measured performance per GPU type."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from llmfleet.api.base import (
    ENV_VAR_NAME,
    ApiModel,
    LabelNamedMeta,
    Name,
    Rule,
    StatusBase,
    map_list,
    set_list,
)
from llmfleet.api.region import GPU_TYPE_PATTERN
from llmfleet.api.resource import AGE_COLUMN, VALID_COLUMN, KindInfo, PrinterColumn, Resource

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?"
#: A container image reference as the distribution spec writes it:
#: ``[registry[:port]/]path[:tag][@digest]``, lowercase path components, e.g.
#: ``vllm/vllm-openai:v0.11.0`` or ``registry.example.com:5000/llm/vllm@sha256:<hex>``.
IMAGE_PATTERN = (
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$"
)
#: A served model name: what clients send in the OpenAI ``model`` field and the gateway
#: matches in a header (``meta-llama/Llama-3.1-8B-Instruct``): no spaces or control
#: characters.
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9._:/@+]*$"

#: One argument of the serving container, at most 4096 characters.
Arg = Annotated[str, StringConstraints(max_length=4096)]


class EnvVar(ApiModel):
    """An environment variable of the serving container."""

    name: str = Field(min_length=1, max_length=256, pattern=ENV_VAR_NAME)
    """Variable name: letters, digits, ``_``, ``-`` and ``.``, not starting with a digit (as
    Kubernetes requires of a container's env)."""
    value: str = Field(default="", max_length=4096)
    """Variable value."""


class ServingRuntime(ApiModel):
    """The container that serves the model."""

    image: str = Field(
        default=DEFAULT_VLLM_IMAGE, min_length=1, max_length=512, pattern=IMAGE_PATTERN
    )
    """Container image reference ``[registry[:port]/]path[:tag][@digest]``; the vLLM
    OpenAI-compatible server by default."""
    args: list[Arg] = Field(default_factory=list, max_length=64)
    """Extra arguments after the model name (e.g. ``--max-model-len=8192``): at most 64,
    each at most 4096 characters."""
    env: list[EnvVar] = map_list(max_items=64)
    """Environment variables of the serving container."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port of the OpenAI-compatible HTTP API."""


class GPUProfile(ApiModel):
    """How one replica of the model performs on one GPU type (measured, e.g. with vLLM's
    benchmark_serving)."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.decodeTokensPerSecond <= self.prefillTokensPerSecond",
            message="decodeTokensPerSecond must be <= prefillTokensPerSecond",
            check=lambda s: s.decode_tokens_per_second <= s.prefill_tokens_per_second,
            field_path=".decodeTokensPerSecond",
        ),
    )

    gpu_type: str = Field(max_length=63, pattern=GPU_TYPE_PATTERN)
    """GPU SKU this profile is for; must match a pool's gpuType in some Region."""
    gpus_per_replica: int = Field(ge=1, le=64)
    """GPUs one replica needs (tensor-parallel size)."""
    prefill_tokens_per_second: float = Field(gt=0, le=10_000_000)
    """Prompt tokens one replica processes per second at full batch, tokens/s."""
    decode_tokens_per_second: float = Field(gt=0, le=1_000_000)
    """Output tokens one replica generates per second at full batch, tokens/s (all
    sequences together)."""
    max_concurrent_sequences: int = Field(default=256, ge=1, le=4096)
    """Most sequences one replica serves at once (vLLM ``--max-num-seqs``)."""
    load_seconds: float = Field(default=120, ge=0, le=7200)
    """Seconds from pod start until the replica serves (image pull + weight load)."""


class Evaluation(ApiModel):
    """The model's measured quality on one metric (what quality-aware routing compares)."""

    metric: str = Field(max_length=63, pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    """Metric name, as SLATier ``spec.routing.metric`` names it (``accuracy``)."""
    score: float = Field(ge=0, le=100)
    """Mean score on the evaluation set, in points (0-100)."""
    dataset: str = Field(default="", max_length=253)
    """What it was measured on (informational), e.g. ``mmlu`` or a file name."""


class RoutingCost(ApiModel):
    """What one request to this model costs, as the router weighs it before answering:
    ``(promptUsd * promptTokens + outputUsd * meanOutputTokens) / 1e6``."""

    prompt_usd_per_million_tokens: float = Field(ge=0, le=10_000)
    """USD per million prompt tokens."""
    output_usd_per_million_tokens: float = Field(ge=0, le=10_000)
    """USD per million output tokens."""
    mean_output_tokens: float = Field(default=256, ge=0, le=1_000_000)
    """Expected output tokens of a request (the answer's length is unknown when routing)."""


class LLMModelSpec(ApiModel):
    """Desired state of an LLMModel."""

    served_model_name: str = Field(min_length=1, max_length=256, pattern=SERVED_NAME_PATTERN)
    """Name clients send in the OpenAI ``model`` field, e.g. ``meta-llama/Llama-3.1-8B-Instruct``."""
    runtime: ServingRuntime = Field(default_factory=ServingRuntime)
    """Serving container."""
    profiles: list[GPUProfile] = map_list(key="gpuType", max_items=16, min_length=1)
    """Performance per GPU type; the model runs only on GPU types listed here."""
    allowed_regions: list[Name] = set_list(max_items=64)
    """Regions the model may run in; empty means every Region."""
    min_replicas_per_region: int = Field(default=0, ge=0, le=1000)
    """Replicas kept whatever the demand (availability floor) in every region of
    ``allowedRegions``, or, when none is listed, in every region with a pool that runs it."""
    quality: float = Field(default=0.5, ge=0, le=1)
    """Relative answer quality (0..1), a summary for reports; quality-aware routing reads
    ``evaluations`` instead."""
    evaluations: list[Evaluation] = map_list(key="metric", max_items=16)
    """Measured quality per metric (points); a tier routing to this model on a metric needs
    it listed here."""
    routing_cost: RoutingCost | None = None
    """Cost of a request as the router weighs it; required of a tier's routing candidate."""


class LLMModelStatus(StatusBase):
    """Observed state of an LLMModel."""

    replicas: int | None = Field(default=None, ge=0)
    """Ready replicas across all regions."""
    desired_replicas: int | None = Field(default=None, ge=0)
    """Replicas the last applied plan asks for across all regions."""


class LLMModel(Resource):
    """A served LLM: runtime, performance per GPU type and placement limits."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="LLMModel",
        plural="llmmodels",
        singular="llmmodel",
        scope="Namespaced",
        short_names=("llmm",),
        printer_columns=(
            PrinterColumn("Served-Name", ".spec.servedModelName"),
            PrinterColumn("GPU-Types", ".spec.profiles[*].gpuType"),
            PrinterColumn("Replicas", ".status.replicas", "integer"),
            PrinterColumn("Desired", ".status.desiredReplicas", "integer"),
            VALID_COLUMN,
            AGE_COLUMN,
        ),
    )

    kind: Literal["LLMModel"] = "LLMModel"
    metadata: LabelNamedMeta
    spec: LLMModelSpec
    status: LLMModelStatus | None = None
