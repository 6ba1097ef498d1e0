"""Synthetic EMR records and drug interactions in the data contract (``dpr synth``).

The generator plants the structure DPR-WG / DPR-AG exist to find (paper sections 1, 3, 4;
``docs/synthetic-data.md`` describes the process and its knobs):

* latent patient conditions (1-2 per patient) that show, noisily, in demographics, abnormal
  labs and admission-note words, never by name;
* a latent severity per stay (age, conditions, the patient, chance) that drives the package
  size (lognormal, coefficient of variation ~0.6) and shows, noisily, as extra abnormal
  acuity labs, more surgery and note words ("stable" ... "critical", "severe");
* protocol bundles: disjoint groups of 2-6 drugs built around synergistic pairs (every
  pair of aligned drugs in a bundle is labelled synergism, no antagonistic pair inside),
  prescribed whole or not at all. Each condition has a first-line bundle and a few shared
  ones, surgery has its own; a package is mostly a union of whole bundles (more of them
  the more severe the stay) plus background drugs (saline-like) and a few individual
  drugs (the condition's extended regimen, synergy partners, random drugs);
* antagonistic pairs that are rarely co-prescribed (conflicting bundles are not combined),
  synergistic pairs that are avoided for patients with one condition (the paper's
  cefuroxime + gentamicin for kidney disease) and drugs contraindicated for a condition
  (infants, pregnancy);
* partial alignment: ~40% of the EMR drugs are in the interaction table (paper: 565 of
  1,428), whose rows follow the paper's none : synergism : antagonism proportions and are
  directed; EMR names carry strengths, forms and salts, the table uses bare names.

Everything is drawn from one ``numpy.random.SeedSequence`` (same arguments, same tables) and
built with vectorized numpy and Arrow; the only per-row Python is the note text. Paper scale
(158,556 records, 1,428 drugs) takes about ten seconds on two cores.

Modules: :mod:`~dpr_dist.data.synth.vocab` (constants, labs, conditions, word lists),
:mod:`~dpr_dist.data.synth.knobs` (:class:`SynthKnobs`, :class:`SynthTruth`),
:mod:`~dpr_dist.data.synth.plan` (drug roles, bundles, interaction structure),
:mod:`~dpr_dist.data.synth.records` (patients and stays), :mod:`~dpr_dist.data.synth.packages`
(drug packages), :mod:`~dpr_dist.data.synth.columns` (Arrow columns) and
:mod:`~dpr_dist.data.synth.api` (:func:`generate`, :func:`generate_with_truth`, :func:`write`).
"""

from dpr_dist.data.synth.api import generate, generate_with_truth, write
from dpr_dist.data.synth.knobs import SynthKnobs, SynthTruth
# _SALTS and _SEVERITY_WORDS: used by tests/data/test_synth.py as synth._SALTS, synth._SEVERITY_WORDS
from dpr_dist.data.synth.vocab import (
    _SALTS, _SEVERITY_WORDS, ACUITY_LABS, CONDITIONS, FLAGS, GENDERS, INSURANCE, LABELS, LABS, PAPER_ALIGNED,
    PAPER_DDI_ROWS, Condition,
)

__all__ = [
    "ACUITY_LABS", "CONDITIONS", "FLAGS", "GENDERS", "INSURANCE", "LABELS", "LABS", "PAPER_ALIGNED", "PAPER_DDI_ROWS",
    "Condition", "SynthKnobs", "SynthTruth", "generate", "generate_with_truth", "write",
]
