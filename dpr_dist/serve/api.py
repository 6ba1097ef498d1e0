"""Request and response models of the HTTP service (pydantic; they make the OpenAPI document).

A request describes one patient in the EMR contract's fields (``docs/data-contract.md``)
without ``drugs``: ``record_id``, ``patient_id``, ``gender`` and ``age`` are required,
``insurance``, ``surgery``, ``labs``, ``note`` and ``admit_time`` are optional. The same
rules as the batch pipeline apply (age in ``[0, 120]``, a lab needs a name, a known flag,
finite numbers and ``ref_low <= ref_high``); unknown fields are refused, so a misspelt
field is an error rather than silently ignored.

Validation errors never echo the submitted values (notes and lab values stay out of
responses and logs); they name the field, e.g. ``patient.labs[2].ref_low``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dpr_dist.data.documents import LAB_FLAGS

#: Interaction types of the relation matrix, in code order (0, 1, 2).
INTERACTION_TYPES = ("none", "synergism", "antagonism")

_ID = dict(min_length=1, max_length=128)
_NAME = dict(min_length=1, max_length=256)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Lab(_Strict):
    """One lab result; ``flag`` null means "derive the level from value and range"."""

    name: str = Field(**_NAME, description="lab test name, e.g. 'Potassium'")
    value: Optional[float] = Field(None, allow_inf_nan=False)
    ref_low: Optional[float] = Field(None, allow_inf_nan=False)
    ref_high: Optional[float] = Field(None, allow_inf_nan=False)
    flag: Optional[Literal["normal", "high", "low", "abnormal"]] = None

    @field_validator("flag", mode="before")
    @classmethod
    def _lower_flag(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower()
            if v not in LAB_FLAGS:
                raise ValueError(f"flag must be one of {list(LAB_FLAGS)} or null")
        return v

    @model_validator(mode="after")
    def _range(self) -> "Lab":
        if self.ref_low is not None and self.ref_high is not None and self.ref_low > self.ref_high:
            raise ValueError("ref_low must not exceed ref_high")
        return self


class Patient(_Strict):
    """A patient description in the EMR contract's fields (no ``drugs``)."""

    record_id: str = Field(**_ID, description="identifier of the hospital stay")
    patient_id: str = Field(**_ID)
    gender: str = Field(min_length=1, max_length=32, description="e.g. 'F' or 'M'")
    age: float = Field(ge=0, le=120, allow_inf_nan=False, description="years, in [0, 120]")
    insurance: Optional[str] = Field(None, max_length=64)
    surgery: Optional[bool] = None
    labs: list[Lab] = Field(default_factory=list, max_length=1000)
    note: Optional[str] = Field(None, max_length=100_000, description="admission note (free text)")
    admit_time: Optional[_dt.datetime] = None


class RecommendRequest(_Strict):
    patient: Patient
    top_k: Optional[int] = Field(None, ge=1, le=50, description="packages to return (default: server's top_k)")


class ScoreRequest(_Strict):
    patient: Patient
    drugs: list[str] = Field(min_length=1, max_length=200,
                             description="the proposed package: drug names as prescribed (normalized by the "
                                         "server the same way as training data)")

    @field_validator("drugs")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if not isinstance(name, str) or not name.strip() or len(name) > 256:
                raise ValueError(f"drug at position {i} must be a non-empty name of at most 256 characters")
        return v


class GenerateRequest(_Strict):
    patient: Patient
    top_k: Optional[int] = Field(None, ge=1, le=50)


# ----------------------------------------------------------------------------- responses
class TypeProbabilities(BaseModel):
    """Probabilities of the interaction types ``softmax(e Q)`` (DPR-AG, eq. 21)."""

    none: float
    synergism: float
    antagonism: float


class Interaction(BaseModel):
    """One ordered interacting pair of the package (``drug_1`` acts on ``drug_2``)."""

    drug_1: str
    drug_2: str
    type: Literal["synergism", "antagonism"]
    description: str
    co_occurrence: float = Field(description="p(drug_2 | drug_1) in the training packages")
    contextual_impact_factor: Optional[float] = Field(
        None, description="DPR-WG: c in (-1, 1) (eq. 10), how this patient's condition scales the interaction")
    type_probabilities: Optional[TypeProbabilities] = Field(
        None, description="DPR-AG: non-personalized softmax(e Q)")
    type_probabilities_personalized: Optional[TypeProbabilities] = Field(
        None, description="DPR-AG: personalized softmax(e^ Q), with the patient's mask")


class AntagonismWarning(BaseModel):
    drug_1: str
    drug_2: str
    description: str
    message: str


class Explanation(BaseModel):
    model: str
    drugs: list[str]
    interactions: list[Interaction]
    warnings: list[AntagonismWarning]
    how_to_read: str


class GenerationRule(BaseModel):
    rule: str
    drug: str
    partner: Optional[str] = None


class ScoredPackage(BaseModel):
    rank: int = Field(ge=1)
    drugs: list[str]
    score: float
    expected_f1: Optional[float] = Field(None, description="expected F1 against the other candidates under "
                                         "softmax(scores / T); set when the server ranks by it (serve.rank_by)")
    origin: str = Field(description="'candidate' (a similar patient's package), or 's2'/'s3' (generated)")
    similarity: Optional[float] = Field(None, description="cosine similarity of the source patient")
    rules: list[GenerationRule] = Field(default_factory=list)


class RecommendResponse(BaseModel):
    request_id: str
    record_id: str
    model: str
    model_version: str
    candidates: int = Field(description="number of packages the model compared")
    packages: list[ScoredPackage]
    explanation: Optional[Explanation] = Field(None, description="of the first package; null if none")


class ScoreResponse(BaseModel):
    request_id: str
    record_id: str
    model: str
    model_version: str
    drugs: list[str] = Field(description="the proposed package, as the model's drug names")
    score: float
    rank: int = Field(ge=1, description="1 + number of candidate packages scoring higher")
    candidates: int
    best_candidate: Optional[ScoredPackage] = None
    explanation: Explanation


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: str
    model_version: str
    replica: str
    ingress: str = Field(description="how requests reach the replica: 'haproxy' (Ray Serve's high-throughput "
                                     "mode), 'direct', 'proxy' (Ray's Python proxy) or 'uvicorn' (no Ray)")
    loaded_at: str
    reload_error: Optional[str] = None


class ModelInfo(BaseModel):
    name: str
    version: str
    model_dir: str
    created: Optional[str] = None
    loaded_at: str
    num_drugs: int
    num_doc_words: int
    training_patients: int
    threshold: float
    neighbors: int
    top_k: int
    rank_by: str = Field(description="how packages are ordered: 'score' (the paper) or 'expected_f1'")
    temperature: Optional[float] = Field(None, description="T of rank_by 'expected_f1'; null for 'score'")
    descriptions: str = Field(description="'model directory' or 'generated from labels'")
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    reload_error: Optional[str] = None


class FieldError(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: str = Field(description="bad_request, payload_too_large, validation_error, unavailable, ...")
    message: str
    fields: list[FieldError] = Field(default_factory=list)
    request_id: Optional[str] = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed JSON"},
    413: {"model": ErrorResponse, "description": "payload larger than serve.max_request_bytes"},
    422: {"model": ErrorResponse, "description": "a field is missing, of the wrong type, out of range, "
                                               "or names an unknown drug"},
    503: {"model": ErrorResponse, "description": "no model loaded"},
}
