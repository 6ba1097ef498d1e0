"""Serving: the model-facing service, explanations, the HTTP API and its Ray Serve deployment.

* :mod:`dpr_dist.serve.model` -- :class:`~dpr_dist.serve.model.LoadedModel`: load a model
  directory, prepare patients, rank their candidate sets, explain packages (no Ray);
* :mod:`dpr_dist.serve.service` -- :class:`DPRService`: on a loaded model, answer
  recommend / score / generate for a batch of patients (no Ray);
* :mod:`dpr_dist.serve.inputs` -- patients and drug names as the model takes them (the
  rules of ``dpr prepare``);
* :mod:`dpr_dist.serve.explain` -- clinician-readable explanations and warnings;
* :mod:`dpr_dist.serve.api` -- request and response models (the OpenAPI document);
* :mod:`dpr_dist.serve.http` -- the FastAPI app: routes, errors, body limit, request ids;
* :mod:`dpr_dist.serve.app` -- its Ray Serve deployment
  (``serve run dpr_dist.serve.app:build_app model_dir=...``) and the plain baseline;
* :mod:`dpr_dist.serve.deploy` -- deploying it on a cluster (``dpr serve``, ``serve
  deploy`` configs, reloading another model in place).
"""

from dpr_dist.serve.inputs import InputError
from dpr_dist.serve.model import model_version
from dpr_dist.serve.service import DPRService

__all__ = ["DPRService", "InputError", "model_version"]
